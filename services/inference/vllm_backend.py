"""The GPU serving path: the same interface as :class:`inference.engine.Engine`, backed by vLLM's async engine.

Why vLLM on a GPU: the transformers engine decodes one request at a time under a lock (right for 2 CPU cores);
vLLM batches many requests continuously and serves many LoRA adapters in one batch (punica kernels), so on a GPU
throughput grows with concurrency instead of queueing. The interface is the transformers engine's, so
:class:`inference.serving.InferenceServer` serves either without knowing which (see :mod:`inference.backends`).

API targeted: vLLM 0.32-era V1 engine (the releases whose wheels pin torch 2.13), through names that have been
stable since the V1 engine became the default:

- ``vllm.AsyncEngineArgs(model=, tokenizer=, enable_lora=True, max_loras=, max_lora_rank=, max_cpu_loras=,
  gpu_memory_utilization=, max_model_len=, disable_log_stats=)`` and ``vllm.AsyncLLMEngine.from_engine_args(args)``
  (``AsyncLLMEngine`` is an alias of ``vllm.v1.engine.async_llm.AsyncLLM``);
- ``vllm.lora.request.LoRARequest(lora_name, lora_int_id, lora_path)``; ``await engine.add_lora(request)``,
  ``await engine.remove_lora(lora_int_id)``, ``engine.reset_prefix_cache()``;
- ``vllm.SamplingParams(n=, temperature=, top_p=, seed=, stop=, stop_token_ids=, max_tokens=,
  skip_special_tokens=, spaces_between_special_tokens=)``, left at the default ``RequestOutputKind.CUMULATIVE``;
- ``engine.generate({"prompt_token_ids": ids}, sampling_params, request_id, lora_request=...)``: an async generator
  of ``RequestOutput`` whose ``outputs[i]`` (``CompletionOutput``) carry ``index``, the cumulative ``text`` and
  ``token_ids`` (the stop/EOS token included, its text not) and ``finish_reason`` (``"stop"``, ``"length"``,
  ``"abort"`` or None while running);
- ``engine.get_tokenizer()`` (a coroutine in older releases, a plain call in newer: both are accepted) and
  ``engine.model_config.max_model_len``.

How it fits a synchronous interface: vLLM's engine lives on an asyncio loop (its output handler task and its
ZeroMQ sockets are bound to the loop it was created on), while InferenceServer calls the engine from worker
threads, synchronously, as it does the transformers engine. So this engine owns one event loop in a daemon
thread, creates vLLM's engine on it, and every public method hands a coroutine to that loop and waits; a stream
is bridged one piece at a time, and closing it early closes the async generator, which aborts the vLLM request.
Generation takes no lock: concurrent requests (from any threads) run together in vLLM's batches.

What is shared with the CPU engine, so both answer alike: the prompt text (:func:`refinery.ml.chat_format.
render_prompt`, tokenised here without special tokens and sent as token ids, so the prompt vLLM sees and the
usage we bill are the same ids), the stop tokens, the adapter checks, the :class:`UnknownAdapter` error, the
StreamPiece protocol (prefill first, deltas that never show part of a stop string, a final piece with the finish
reason, the token count and the full text) and the ``tool_calls`` finish reason.

Testing: tests/unit/test_inference_vllm_backend.py runs everything here against a fake ``vllm`` package, which
checks what this module asks of vLLM and how it turns vLLM's outputs into pieces, not vLLM itself. The real vLLM
path runs only where vLLM and a GPU exist (bench/vllm_smoke.py); it has not been run in this repository's CI.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from refinery.ml.chat_format import parse_completion, render_prompt

from inference.engine import (
    _STOP_TOKENS,
    Completion,
    DeltaStreams,
    GenerationCancelled,
    GenerationParams,
    StreamPiece,
    UnknownAdapter,
    _check_adapter_dir,
    _first_stop,
    _held_back,
)

T = TypeVar("T")

_WARM_UP_MESSAGES = [{"role": "user", "content": "Hi"}]
_END = object()  # end of an async generator, returned rather than raised across the thread boundary


class VllmUnavailable(RuntimeError):
    """The vLLM backend was asked for, but ``vllm`` cannot be imported here."""


@dataclass(frozen=True)
class _Vllm:
    """The few vLLM names this module uses, imported once and only when a VllmEngine is built."""

    AsyncEngineArgs: Any
    AsyncLLMEngine: Any
    SamplingParams: Any
    LoRARequest: Any
    # SamplingParams arguments for "generate one JSON object", or None where this vLLM has no structured outputs.
    json_object: dict[str, Any] | None = None


def import_vllm() -> _Vllm:
    """vLLM's classes, or :class:`VllmUnavailable` saying why and what to do instead.

    Lazy on purpose: vLLM is CUDA-only on PyPI (its wheels pull a CUDA torch), so it is absent from CPU installs,
    and importing this module there must still work."""
    try:
        import vllm
        from vllm.lora.request import LoRARequest
    except ImportError as exc:
        raise VllmUnavailable(
            "the vLLM inference backend needs the `vllm` package, which is not importable here "
            f"({exc}). vLLM is CUDA-only on PyPI: install it only on a machine with an NVIDIA GPU, or set "
            "REFINERY_INFERENCE_BACKEND=transformers (or auto) to serve with the CPU engine."
        ) from exc
    return _Vllm(
        AsyncEngineArgs=vllm.AsyncEngineArgs,
        AsyncLLMEngine=vllm.AsyncLLMEngine,
        SamplingParams=vllm.SamplingParams,
        LoRARequest=LoRARequest,
        json_object=_json_object_constraint(vllm),
    )


def _check_rank(adapter_dir: Path, max_lora_rank: int) -> None:
    """vLLM preallocates LoRA buffers for ``max_lora_rank``: a larger adapter cannot load, so say so up front."""
    config = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
    rank = int(config.get("r") or 0)
    if rank > max_lora_rank:
        raise ValueError(
            f"adapter rank r={rank} exceeds this engine's max_lora_rank={max_lora_rank} "
            "(raise REFINERY_INFERENCE_VLLM_MAX_LORA_RANK)"
        )


async def _maybe_await(value: Any) -> Any:
    """vLLM has turned some coroutines into plain methods between releases (get_tokenizer, reset_prefix_cache)."""
    return await value if inspect.isawaitable(value) else value


async def _next_or_end(agen: AsyncIterator[T]) -> T | object:
    try:
        return await agen.__anext__()
    except StopAsyncIteration:
        return _END


class _LoopThread:
    """One asyncio loop in a daemon thread, and a blocking ``call`` into it from any other thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a blocking engine call from the engine's own event loop would deadlock")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()


class _ChoiceText:
    """Turns one choice's cumulative outputs into StreamPieces, as the CPU engine's decode loop yields them.

    vLLM reports the whole text so far on every step; the delta is what lies past what was already shown. Text
    that might still turn into a stop string (or is half a UTF-8 character) is held back until it cannot, so a
    stop string never leaks into the stream even in part. vLLM already truncates at stop strings and holds such
    text back itself; doing it here as well keeps the stream right whatever vLLM's buffering does."""

    def __init__(self, index: int, prefill: str, stops: list[str], suffix: str = "", tool_calls: bool = True) -> None:
        self.index = index
        self.prefill = prefill
        self.stops = stops
        self.suffix = suffix  # closes a JSON-constrained answer once vLLM ends it (a forced tool call's tail)
        self.tool_calls = tool_calls
        self.emitted = 0
        self.done = False

    def update(self, text: str, completion_tokens: int, finish_reason: str | None) -> list[StreamPiece]:
        if self.done:
            return []
        pieces: list[StreamPiece] = []
        cut = _first_stop(text, self.stops, 0)
        if cut is not None:
            text, finish_reason = text[:cut], "stop"
        if finish_reason is None:
            safe = len(text) - _held_back(text, self.stops)
            if safe > self.emitted:
                pieces.append(StreamPiece(self.index, text[self.emitted:safe]))
                self.emitted = safe
            return pieces
        if finish_reason not in ("stop", "length"):
            raise RuntimeError(f"vLLM ended choice {self.index} with finish reason {finish_reason!r}")
        text = text.rstrip("\ufffd")  # a character cut off mid-way by the end of generation
        if finish_reason == "stop" and self.suffix:
            text += self.suffix  # structured output ended the object: close what the prefill opened
        if len(text) > self.emitted:
            pieces.append(StreamPiece(self.index, text[self.emitted:]))
            self.emitted = len(text)
        full = self.prefill + text
        finish = finish_reason
        if finish != "length" and self.tool_calls and parse_completion(full).get("tool_calls"):
            finish = "tool_calls"
        pieces.append(StreamPiece(self.index, "", finish_reason=finish, completion_tokens=completion_tokens,
                                  text=full))
        self.done = True
        return pieces


def _json_object_constraint(vllm: Any) -> dict[str, Any] | None:
    """SamplingParams arguments that make vLLM generate one JSON object: ``structured_outputs=
    StructuredOutputsParams(json_object=True)`` in the 0.1x+ API, ``guided_decoding=GuidedDecodingParams(...)``
    in the releases before it."""
    module = getattr(vllm, "sampling_params", None)
    if module is not None and hasattr(module, "StructuredOutputsParams"):
        return {"structured_outputs": module.StructuredOutputsParams(json_object=True)}
    if module is not None and hasattr(module, "GuidedDecodingParams"):
        return {"guided_decoding": module.GuidedDecodingParams(json_object=True)}
    return None


@dataclass
class _Request:
    """A validated request: everything generation needs, computed before any response is started."""

    prompt_ids: list[int]
    prefill: str
    n: int
    stops: list[str]
    lora: Any  # LoRARequest | None
    sampling: Any  # SamplingParams, or None when there is no room left to generate
    suffix: str = ""
    tool_calls: bool = True


class VllmEngine(DeltaStreams):
    """The base model in vLLM plus up to ``max_adapters`` LoRA adapters (least recently used unloaded first).

    ``max_loras`` is how many distinct adapters may run in one GPU batch; ``max_adapters`` (vLLM's
    ``max_cpu_loras``) how many stay loaded. An adapter maps to one LoRARequest id for the life of the engine, so
    a reloaded adapter keeps its id (and vLLM's prefix cache is reset, since cached KV came from the old weights).
    """

    def __init__(
        self,
        base_dir: Path,
        base_id: str,
        max_adapters: int = 32,
        *,
        max_loras: int = 8,
        max_lora_rank: int = 64,
        gpu_memory_utilization: float = 0.85,
        max_model_len: int | None = None,
        engine_options: dict[str, Any] | None = None,
    ) -> None:
        self._vllm = import_vllm()
        self.base_id = base_id
        self.max_adapters = max_adapters
        self.max_lora_rank = max_lora_rank
        self.last_switch_seconds = 0.0  # vLLM mixes adapters within a batch: there is no switch to time
        self._adapters: OrderedDict[str, Any] = OrderedDict()  # name -> LoRARequest
        self._ids: dict[str, int] = {}
        self._registry = threading.Lock()  # guards the two dicts above; held only briefly
        self._loading = threading.Lock()  # serialises loads and unloads (each awaits vLLM)
        max_loras = max(1, min(max_loras, max_adapters))
        options: dict[str, Any] = {
            "model": str(base_dir),
            "tokenizer": str(base_dir),
            "enable_lora": True,
            "max_loras": max_loras,
            "max_lora_rank": max_lora_rank,
            "max_cpu_loras": max(max_adapters, max_loras),
            "gpu_memory_utilization": gpu_memory_utilization,
            "disable_log_stats": True,
        }
        if max_model_len is not None:
            options["max_model_len"] = max_model_len
        options.update(engine_options or {})
        self.engine_args = self._vllm.AsyncEngineArgs(**options)
        self._loop = _LoopThread("vllm-engine-loop")
        try:
            self._engine = self._loop.call(self._create())
            self.tokenizer = self._loop.call(_maybe_await(self._engine.get_tokenizer()))
            self.max_context = self._loop.call(self._max_model_len())
        except BaseException:
            self._loop.stop()
            raise
        vocab = self.tokenizer.get_vocab()
        self._stop_ids = sorted({vocab[t] for t in _STOP_TOKENS if t in vocab})

    async def _create(self) -> Any:
        """Created on the engine's own loop, so vLLM's background output handler starts there."""
        return self._vllm.AsyncLLMEngine.from_engine_args(self.engine_args)

    async def _max_model_len(self) -> int:
        config = getattr(self._engine, "model_config", None)
        if config is None and hasattr(self._engine, "get_model_config"):
            config = await _maybe_await(self._engine.get_model_config())
        return int(getattr(config, "max_model_len", 0) or 1 << 30)

    def close(self) -> None:
        """Stop vLLM's engine core process and the loop thread."""
        shutdown = getattr(self._engine, "shutdown", None)
        if shutdown is not None:
            with contextlib.suppress(Exception):
                self._loop.call(_maybe_await(shutdown()))
        self._loop.stop()

    # ------------------------------------------------------------------------------------- adapters

    def lora_id(self, name: str) -> int:
        """The LoRARequest id of an adapter name: allocated once, then the same for the engine's life (ids start
        at 1, as vLLM requires)."""
        with self._registry:
            if name not in self._ids:
                self._ids[name] = len(self._ids) + 1
            return self._ids[name]

    def load_adapter(self, name: str, adapter_dir: Path) -> float:
        """Register (or replace) an adapter and run one warm-up token through it, so a bad adapter fails here
        rather than on a client's request; returns the seconds it took."""
        adapter_dir = Path(adapter_dir)
        _check_adapter_dir(adapter_dir, self.base_id)
        _check_rank(adapter_dir, self.max_lora_rank)
        request = self._vllm.LoRARequest(name, self.lora_id(name), str(adapter_dir.resolve()))
        with self._loading:
            started = time.perf_counter()
            with self._registry:
                replacing = name in self._adapters
            try:
                self._loop.call(self._load(request, replacing))
            except Exception as exc:
                with self._registry:
                    self._adapters.pop(name, None)
                raise RuntimeError(f"vLLM could not load adapter {name!r} from {str(adapter_dir)!r}: {exc}") from exc
            with self._registry:
                self._adapters[name] = request
                self._adapters.move_to_end(name)
                evicted = []
                while len(self._adapters) > self.max_adapters:
                    evicted.append(self._adapters.popitem(last=False)[1])
            for old in evicted:
                self._loop.call(self._engine.remove_lora(old.lora_int_id))
            return time.perf_counter() - started

    async def _load(self, request: Any, replacing: bool) -> None:
        if replacing:
            await self._engine.remove_lora(request.lora_int_id)
            reset = getattr(self._engine, "reset_prefix_cache", None)
            if reset is not None:
                await _maybe_await(reset())
        await self._engine.add_lora(request)
        try:
            prompt_ids = self._encode(render_prompt(_WARM_UP_MESSAGES, None)[0])
            sampling = self._sampling_params(GenerationParams(max_tokens=1, temperature=0.0), 1)
            async for _ in self._engine.generate({"prompt_token_ids": prompt_ids}, sampling,
                                                 f"refinery-warmup-{uuid.uuid4().hex}", lora_request=request):
                pass
        except BaseException:
            with contextlib.suppress(Exception):
                await self._engine.remove_lora(request.lora_int_id)
            raise

    def unload_adapter(self, name: str) -> None:
        with self._loading:
            with self._registry:
                request = self._adapters.pop(name, None)
            if request is None:
                raise UnknownAdapter(name)
            self._loop.call(self._engine.remove_lora(request.lora_int_id))

    def adapters(self) -> list[str]:
        with self._registry:
            return list(self._adapters)

    def _lora_for(self, adapter: str | None) -> Any:
        if adapter is None:
            return None
        with self._registry:
            if adapter not in self._adapters:
                raise UnknownAdapter(adapter)
            self._adapters.move_to_end(adapter)
            return self._adapters[adapter]

    # ------------------------------------------------------------------------------------- generation

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def count_tokens(self, messages: list[dict], tools: list[dict] | None) -> int:
        """Prompt tokens of a request, as billed in ``usage.prompt_tokens``."""
        return len(self._encode(render_prompt(messages, tools)[0]))

    def _sampling_params(self, params: GenerationParams, max_tokens: int) -> Any:
        """GenerationParams as vLLM's SamplingParams, with the CPU engine's meaning of each value: temperature
        <= 0 is greedy, a top_p outside (0, 1) filters nothing, empty stop strings are ignored, and decoding keeps
        special tokens the way the CPU engine's ``decode(skip_special_tokens=False)`` does."""
        structured: dict[str, Any] = {}
        if params.json_from is not None:
            if self._vllm.json_object is None:
                raise ValueError("this vLLM build has no structured outputs, which JSON answers need")
            structured = self._vllm.json_object
        return self._vllm.SamplingParams(
            **structured,
            n=params.n,
            temperature=max(0.0, float(params.temperature)),
            top_p=float(params.top_p) if 0 < params.top_p < 1 else 1.0,
            seed=params.seed,
            stop=[s for s in params.stop if s],
            stop_token_ids=list(self._stop_ids),
            max_tokens=max_tokens,
            skip_special_tokens=False,
            spaces_between_special_tokens=False,
        )

    def _prepare(
        self, adapter: str | None, messages: list[dict], tools: list[dict] | None, params: GenerationParams
    ) -> _Request:
        if params.n < 1:
            raise ValueError(f"n must be at least 1, got {params.n}")
        lora = self._lora_for(adapter)
        prompt, prefill = render_prompt(messages, tools)
        prompt_ids = self._encode(prompt)
        if len(prompt_ids) >= self.max_context:
            raise ValueError(f"the prompt is {len(prompt_ids)} tokens; the model's context is {self.max_context}")
        if params.json_from is not None and params.json_from != len(prefill):
            # vLLM constrains what it generates, not text already given: the object must start where generation does.
            raise ValueError("a JSON answer must start after the prefill when served by vLLM")
        budget = max(0, min(params.max_tokens, self.max_context - len(prompt_ids)))
        sampling = self._sampling_params(params, budget) if budget > 0 else None
        return _Request(prompt_ids, prefill, params.n, [s for s in params.stop if s], lora, sampling,
                        params.suffix if params.json_from is not None else "", params.tool_calls)

    async def _pieces(self, request: _Request) -> AsyncGenerator[StreamPiece, None]:
        """Every choice's pieces, interleaved as vLLM produces them (InferenceServer keys them by index)."""
        choices = [_ChoiceText(i, request.prefill, request.stops, request.suffix, request.tool_calls)
                   for i in range(request.n)]
        if request.prefill:
            for choice in choices:
                yield StreamPiece(choice.index, request.prefill)
        if request.sampling is None:  # no room for a token: every choice ends at once, as the CPU engine's do
            for choice in choices:
                for piece in choice.update("", 0, "length"):
                    yield piece
            return
        outputs = self._engine.generate({"prompt_token_ids": list(request.prompt_ids)}, request.sampling,
                                        f"refinery-{uuid.uuid4().hex}", lora_request=request.lora)
        try:
            async for output in outputs:
                for completion in output.outputs:
                    choice = choices[completion.index]
                    for piece in choice.update(completion.text, len(completion.token_ids), completion.finish_reason):
                        yield piece
        finally:
            await outputs.aclose()  # aborts the vLLM request when the consumer stopped early
        unfinished = [c.index for c in choices if not c.done]
        if unfinished:
            raise RuntimeError(f"vLLM's stream ended before choices {unfinished} finished")

    def stream_pieces(
        self, adapter: str | None, messages: list[dict], tools: list[dict] | None, params: GenerationParams
    ) -> Iterator[StreamPiece]:
        """Every choice as StreamPieces (choices interleaved, each in order). An unknown adapter or an over-long
        prompt raises here, before anything is generated; closing the iterator early aborts the request."""
        request = self._prepare(adapter, messages, tools, params)
        return self._bridge(self._pieces(request))

    def _bridge(self, pieces: AsyncIterator[StreamPiece]) -> Iterator[StreamPiece]:
        finished = False
        try:
            while True:
                piece = self._loop.call(_next_or_end(pieces))
                if piece is _END:
                    finished = True
                    return
                yield piece  # type: ignore[misc]
        finally:
            if not finished:
                aclose = getattr(pieces, "aclose", None)
                if aclose is not None:
                    self._loop.call(aclose())

    def generate(
        self, adapter: str | None, messages: list[dict], tools: list[dict] | None, params: GenerationParams,
        cancelled: threading.Event | None = None,
    ) -> Completion:
        """The whole completion in one trip to the engine's loop; aborted (GenerationCancelled) once `cancelled`
        is set."""
        request = self._prepare(adapter, messages, tools, params)
        finals = self._loop.call(self._final_pieces(request, cancelled))
        return Completion(
            choices=[{"index": p.index, "message": parse_completion(p.text, request.tool_calls),
                      "finish_reason": p.finish_reason} for p in finals],
            prompt_tokens=len(request.prompt_ids),
            completion_tokens=sum(p.completion_tokens for p in finals),
        )

    async def _final_pieces(self, request: _Request, cancelled: threading.Event | None = None) -> list[StreamPiece]:
        """One trip to the engine's loop for a whole non-streamed request; choices in index order. Closing the
        pieces early (the client left) aborts the request in the engine."""
        finals = []
        pieces = self._pieces(request)
        try:
            async for piece in pieces:
                if cancelled is not None and cancelled.is_set():
                    raise GenerationCancelled
                if piece.finish_reason is not None:
                    finals.append(piece)
        finally:
            await pieces.aclose()
        return sorted(finals, key=lambda piece: piece.index)
