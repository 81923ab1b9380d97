"""OpenAI-compatible chat completions for deployed adapters, reward-model scores, and the control
API that loads them.

proxy-router resolves `openpipe:<slug>` and sends the request here with the adapter (model id)
and the model's default temperature in headers; the body is the client's own, so `model` is
echoed as the client wrote it. Generation runs in a worker thread (one at a time on CPU);
streams are produced token by token from that thread.

A deployment is a chat adapter or a reward model, told apart by its artifact (a reward model is
a sequence-classification adapter, see `inference.rewards`); both are deployed, evicted and
loaded again the same way, but a reward model only scores (`ScoreReward`) and a chat request
to it is refused with a 400 that says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import orjson
from aiohttp import web
from refinery.ml.chat_format import AnswerShape, shape_answer
from refinery.ml.reward_scoring import RewardScore, is_reward_adapter
from refinery.rpc import inference_pb2, inference_pb2_grpc, models_pb2
from refinery.runtime.executors import Purpose
from refinery.stores.objectstore import ObjectStore
from refinery.wire.entries import apply_pruning_rules

if TYPE_CHECKING:
    from inference.rewards import RewardModels

log = logging.getLogger("refinery.inference")

JSON = "application/json"

# Loading an evicted adapter again holds a thread for seconds (object store, safetensors): its own
# pool, so that requests for many evicted models at once never take every thread of the default one.
ADAPTER_LOADS = Purpose("inference.adapter-loads", workers=1)

Lookup = Callable[[str], Awaitable[models_pb2.Deployment | None]]
"""Asks the registry for a model's deployment: for a deployed model this server was never told of."""


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": code, "code": code}, "message": message,
                              "code": code, "issues": []}, status=status)


def _messages(body: dict[str, Any]) -> tuple[list[dict], list[dict] | None]:
    """Messages and tools, with legacy `functions` read as tools (answers then use function_call)."""
    messages = body["messages"]
    tools = body.get("tools")
    if not tools and body.get("functions"):
        tools = [{"type": "function", "function": f} for f in body["functions"]]
    return messages, tools or None


def _shape(body: dict[str, Any], messages: list[dict], tools: list[dict] | None) -> AnswerShape:
    """The request's `tool_choice` (or legacy `function_call`) and `response_format` as an AnswerShape; ValueError
    names the bad field."""
    choice, field = body.get("tool_choice"), "tool_choice"
    if choice is None and body.get("function_call") is not None:
        choice, field = body["function_call"], "function_call"
    return shape_answer(messages, tools, choice, body.get("response_format"), field)


class ReloadFailed(RuntimeError):
    """A deployed model was evicted and could not be loaded again (its artifact unreachable)."""


def _reward_refusal(model: Any) -> web.Response:
    return _error(400, "invalid_request_error",
                  f"The model `{model}` is a reward model: it scores conversations (reward-model criteria and "
                  "the judge API) and does not answer chat completions")


def _legacy_function_call(message: dict[str, Any]) -> dict[str, Any]:
    calls = message.pop("tool_calls", None)
    if calls:
        message["function_call"] = calls[0]["function"]
    return message


class InferenceServer:
    """Serves every deployed adapter, whatever the engine's capacity: the engine keeps at most
    `max_adapters` in memory and evicts the least recently used, so the server remembers each
    deployment (its adapter key and local copy) and loads an evicted adapter again on its next
    request. A deployed model answers, even when more are deployed than fit in memory at once.
    Reward models live in `rewards` (their own bounded set, see `inference.rewards`) and are
    remembered, evicted and loaded again alike. With `lookup`, a model this server was never told
    of (a restart whose restore has not reached it yet) is asked of the registry before it is
    answered as unknown."""

    def __init__(self, engine: Any, objects: ObjectStore, adapters_dir: Path, base_id: str,
                 rewards: RewardModels | None = None, lookup: Lookup | None = None) -> None:
        self.engine = engine
        self._objects = objects
        self._dir = adapters_dir
        self.base_id = base_id
        self.rewards = rewards
        self.lookup = lookup
        self.rules: dict[str, list[str]] = {}
        self.deployed: dict[str, str] = {}  # model id -> adapter key: what this server answers for
        self.reward_models: set[str] = set()  # the deployed ones known to be reward models
        self._reloading: dict[str, asyncio.Lock] = {}

    # ---- control ----------------------------------------------------------------------

    def _fetch(self, model_id: str, adapter_key: str) -> Path:
        target = self._dir / model_id
        staging = self._dir / f".{model_id}-{uuid.uuid4().hex[:6]}"
        self._objects.get_dir(adapter_key, staging)
        if target.exists():
            import shutil

            shutil.rmtree(target)
        staging.rename(target)
        return target

    def _load_local(self, model_id: str, target: Path) -> float:
        """Load a local artifact into what serves its kind: the reward models or the chat engine."""
        if is_reward_adapter(target):
            if self.rewards is None:
                raise ValueError("this inference serves no reward models")
            seconds = self.rewards.load(model_id, target)
            self.reward_models.add(model_id)
            return seconds
        seconds = self.engine.load_adapter(model_id, target)
        self.reward_models.discard(model_id)
        return float(seconds)

    def in_memory(self, model_id: str) -> bool:
        return model_id in self.engine.adapters() or (self.rewards is not None and model_id in self.rewards.names())

    def load(self, model_id: str, adapter_key: str, rules: list[str]) -> float:
        started = time.perf_counter()
        target = self._fetch(model_id, adapter_key)
        self._load_local(model_id, target)
        self.rules[model_id] = list(rules)
        self.deployed[model_id] = adapter_key
        if model_id in self.reward_models and self.rewards is not None:
            self.rewards.warm_up(model_id)  # deployed means it answers: one conversation scored
            return time.perf_counter() - started
        from inference.engine import GenerationParams

        # Deployed means it answers: one token through the new adapter.
        self.engine.generate(model_id, [{"role": "user", "content": "Hi"}], None,
                             GenerationParams(max_tokens=1, temperature=0.0))
        return time.perf_counter() - started

    def remember(self, model_id: str, adapter_key: str, rules: list[str]) -> None:
        """A deployment to answer for, loaded on its first request (more than fit in memory)."""
        self.deployed[model_id] = adapter_key
        self.rules[model_id] = list(rules)

    def forget(self, model_id: str) -> None:
        """The model is no longer deployed: unload it and never load it again on demand."""
        from inference.engine import UnknownAdapter

        self.deployed.pop(model_id, None)
        self.rules.pop(model_id, None)
        self.reward_models.discard(model_id)
        with contextlib.suppress(UnknownAdapter):  # evicted already: nothing in memory to release
            self.engine.unload_adapter(model_id)
        if self.rewards is not None:
            with contextlib.suppress(UnknownAdapter):
                self.rewards.unload(model_id)

    def _reload(self, model_id: str) -> None:
        """Load an evicted adapter again, from its local copy (or the object store, if that is gone)."""
        target = self._dir / model_id
        if not (target / "adapter_config.json").is_file():
            target = self._fetch(model_id, self.deployed[model_id])
        seconds = self._load_local(model_id, target)
        log.info("reloaded evicted adapter %s in %.2f s", model_id, seconds)

    async def _look_up(self, model_id: str) -> bool:
        """Whether the registry has this model deployed on our base (then it is remembered here)."""
        if self.lookup is None or not model_id:
            return False
        found = await self.lookup(model_id)
        if found is None or (found.base_model and found.base_model != self.base_id):
            return False
        self.remember(found.model_id, found.adapter_key, list(found.pruning_rules))
        return True

    async def ready(self, model_id: str) -> bool:
        """Whether the adapter can answer now, loading it again if it was evicted; False for a model
        this server was never asked to deploy (and the registry, when asked, has not deployed)."""
        if self.in_memory(model_id):
            return True
        if model_id not in self.deployed and not await self._look_up(model_id):
            return False
        lock = self._reloading.setdefault(model_id, asyncio.Lock())
        async with lock:  # concurrent requests for one evicted adapter load it once
            if not self.in_memory(model_id) and model_id in self.deployed:
                await ADAPTER_LOADS.run(self._reload, model_id)
        return self.in_memory(model_id)

    async def score_reward(self, model_id: str, messages: list[dict], tools: list[dict] | None) -> RewardScore:
        """A deployed reward model's score for the conversation, on the scoring pool (loaded again
        first if it was evicted). Raises UnknownAdapter for a model not deployed here,
        NotARewardModel for a chat model, BadConversation for what cannot be scored."""
        from inference.engine import UnknownAdapter
        from inference.rewards import SCORING, NotARewardModel

        async def loaded() -> bool:
            try:
                return await self.ready(model_id)
            except grpc.aio.AioRpcError:  # the registry could not be asked: the caller says so
                raise
            except Exception as exc:
                log.exception("reloading reward model %s failed", model_id)
                raise ReloadFailed(f"reward model {model_id} could not be loaded again: {exc}") from exc

        if model_id in self.engine.adapters() and model_id not in self.reward_models:
            raise NotARewardModel(model_id)
        if not await loaded():
            raise UnknownAdapter(model_id)
        if model_id not in self.reward_models or self.rewards is None:
            raise NotARewardModel(model_id)
        try:
            return await SCORING.run(self.rewards.score, model_id, messages, tools)
        except UnknownAdapter:  # evicted between the check and the scoring: loaded again, scored once more
            if not await loaded():
                raise
            return await SCORING.run(self.rewards.score, model_id, messages, tools)

    # ---- HTTP -------------------------------------------------------------------------

    async def models(self, _: web.Request) -> web.Response:
        """The base model served here, callable without an adapter (fine-tuned models are per project:
        model-registry knows them)."""
        return web.json_response({"object": "list", "data": [
            {"id": self.base_id, "object": "model", "owned_by": "refinery", "kind": "base"}]})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        from inference.engine import GenerationCancelled, GenerationParams, UnknownAdapter

        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            return _error(400, "invalid_request_error", f"body is not valid JSON: {exc}")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
            return _error(400, "invalid_request_error", "`messages` must be a non-empty array")
        if not all(isinstance(m, dict) for m in body["messages"]):
            return _error(400, "invalid_request_error", "`messages` must be an array of objects")
        adapter = request.headers.get("x-refinery-adapter") or None
        if adapter is not None:
            if adapter in self.reward_models:
                return _reward_refusal(body.get("model"))
            try:
                loaded = await self.ready(adapter)
            except Exception as exc:
                log.exception("reloading adapter %s failed", adapter)
                return _error(503, "model_unavailable",
                              f"The model `{body.get('model')}` could not be loaded again: {exc}; retry")
            if not loaded:
                return _error(404, "model_not_found", f"The model `{body.get('model')}` is not loaded here")
            if adapter in self.reward_models:  # remembered at restart, and found a reward model when loaded
                return _reward_refusal(body.get("model"))
        temperature = body.get("temperature")
        if temperature is None:
            default = request.headers.get("x-refinery-default-temperature")
            temperature = float(default) if default else 1.0
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or 512
        stop = body.get("stop") or []
        if isinstance(stop, str):
            stop = [stop]
        try:
            params = GenerationParams(
                max_tokens=int(max_tokens), temperature=float(temperature), top_p=float(body.get("top_p") or 1.0),
                stop=list(stop), n=int(body.get("n") or 1), seed=body.get("seed"))
            if not 0 < params.n <= 8:
                raise ValueError("n must be between 1 and 8")
            if not 0 < params.max_tokens <= 8192:
                raise ValueError("max_tokens must be between 1 and 8192")
        except (TypeError, ValueError) as exc:
            return _error(400, "invalid_request_error", str(exc))
        messages, tools = _messages(body)
        rules = self.rules.get(adapter or "", [])
        if rules:
            keep_last = messages[-1:] if messages[-1].get("role") == "assistant" else []
            head = messages[:-1] if keep_last else messages
            messages = apply_pruning_rules(head, rules) + keep_last
        try:
            shape = _shape(body, messages, tools)
        except ValueError as exc:
            return _error(400, "invalid_request_error", str(exc))
        messages, tools = shape.messages, shape.tools
        params.json_from, params.suffix, params.tool_calls = shape.json_from, shape.suffix, shape.tool_calls
        legacy = bool(body.get("functions")) and not body.get("tools")
        model = body.get("model") or "openpipe"
        created = int(time.time())
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        if body.get("stream") is True:
            return await self._stream(request, adapter, messages, tools, params, model, created, completion_id,
                                      legacy, bool((body.get("stream_options") or {}).get("include_usage")))
        gone = threading.Event()
        watch = asyncio.create_task(_watch_client(request, gone))
        try:
            result = await self._generate(adapter, messages, tools, params, gone)
        except UnknownAdapter:
            return _error(404, "model_not_found", f"The model `{model}` is not loaded here")
        except ValueError as exc:
            return _error(400, "invalid_request_error", str(exc))
        except GenerationCancelled:
            log.info("client left before its completion was done; generation stopped (%s)", model)
            return _error(499, "client_closed_request", "the client closed the connection")  # nobody reads it
        finally:
            gone.set()  # also when this handler is cancelled (its client left): the thread must stop too
            watch.cancel()
        choices = []
        for c in result.choices:
            msg = _legacy_function_call(c["message"]) if legacy else c["message"]
            finish = "function_call" if legacy and msg.get("function_call") else c["finish_reason"]
            choices.append({"index": c["index"], "message": msg, "finish_reason": finish, "logprobs": None})
        return web.json_response({
            "id": completion_id, "object": "chat.completion", "created": created, "model": model,
            "choices": choices,
            "usage": {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
                      "total_tokens": result.prompt_tokens + result.completion_tokens},
        }, dumps=lambda o: orjson.dumps(o).decode())

    async def _generate(self, adapter: str | None, messages: list[dict], tools: list[dict] | None,
                        params: Any, gone: threading.Event) -> Any:
        """Generate until done or `gone` is set (the client left: GenerationCancelled); an adapter evicted between
        the check and the generation (other requests loaded others meanwhile) is loaded again once and the
        generation retried."""
        from inference.engine import UnknownAdapter

        try:
            return await asyncio.to_thread(self.engine.generate, adapter, messages, tools, params, gone)
        except UnknownAdapter:
            if adapter is None or not await self.ready(adapter):
                raise
            return await asyncio.to_thread(self.engine.generate, adapter, messages, tools, params, gone)

    async def _stream(self, request, adapter, messages, tools, params, model, created, completion_id, legacy,
                      include_usage) -> web.StreamResponse:
        queue: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        prompt_tokens = await asyncio.to_thread(self.engine.count_tokens, messages, tools)
        gone = threading.Event()  # set when the client left: the generation stops at its next token

        def produce() -> None:
            try:
                pieces = self.engine.stream_pieces(adapter, messages, tools, params)
                for piece in pieces:
                    if gone.is_set():
                        close = getattr(pieces, "close", None)
                        if close is not None:
                            close()  # frees the engine (its lock, or vLLM's request) now
                        break
                    loop.call_soon_threadsafe(queue.put_nowait, piece)
            except Exception as exc:  # surfaced to the client as an error event
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            loop.call_soon_threadsafe(queue.put_nowait, None)

        try:
            return await self._relay(request, queue, loop, produce, adapter, model, created, completion_id, legacy,
                                     include_usage, prompt_tokens, params, tools)
        finally:
            gone.set()  # finished, or the client left mid-stream (a write failed): nothing more to generate

    async def _relay(self, request, queue, loop, produce, adapter, model, created, completion_id, legacy,
                     include_usage, prompt_tokens, params, tools) -> web.StreamResponse:
        """The stream's frames, written as the engine produces its pieces (see `_stream`)."""
        from refinery.ml.chat_format import parse_completion

        from inference.engine import UnknownAdapter

        worker = loop.run_in_executor(None, produce)
        response = web.StreamResponse(status=200, headers={"content-type": "text/event-stream",
                                                           "cache-control": "no-cache"})

        def frame(choices: list[dict], usage: dict | None = None) -> bytes:
            chunk: dict[str, Any] = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                                     "model": model, "choices": choices}
            if usage is not None:
                chunk["usage"] = usage
            return b"data: " + orjson.dumps(chunk) + b"\n\n"

        # With tools, a choice is known only once complete (its text may be a call): it is sent as one delta then,
        # role, content and calls together, since clients that merge chunks (the openpipe SDK's merge_openai_chunks)
        # need a legacy function_call, and every tool call, in the first chunk of the choice.
        buffered = bool(tools) and params.tool_calls
        started: set[int] = set()
        completion_tokens = 0
        first = await queue.get()
        if isinstance(first, UnknownAdapter) and adapter is not None:
            await worker
            await queue.get()  # the end marker of that first run
            if not await self.ready(adapter):  # evicted since the check: loaded again, and run again once
                return _error(404, "model_not_found", f"The model `{model}` is not loaded here")
            worker = loop.run_in_executor(None, produce)
            first = await queue.get()
        if isinstance(first, UnknownAdapter):
            await worker
            return _error(404, "model_not_found", f"The model `{model}` is not loaded here")
        if isinstance(first, Exception):
            await worker
            return _error(400, "invalid_request_error", str(first))
        await response.prepare(request)
        item = first
        while item is not None:
            if isinstance(item, Exception):
                await response.write(b"data: " + orjson.dumps({"error": {"message": str(item)}}) + b"\n\n")
                break
            idx = item.index
            if idx not in started and not buffered:
                started.add(idx)
                await response.write(frame([{"index": idx, "delta": {"role": "assistant", "content": ""},
                                             "finish_reason": None, "logprobs": None}]))
            if item.finish_reason is None:
                if item.delta and not buffered:
                    await response.write(frame([{"index": idx, "delta": {"content": item.delta},
                                                 "finish_reason": None, "logprobs": None}]))
            else:
                completion_tokens += item.completion_tokens
                if buffered:
                    msg = parse_completion(item.text)
                    delta: dict[str, Any] = {"role": "assistant", "content": msg.get("content")}
                    if msg.get("tool_calls"):
                        if legacy:
                            delta["function_call"] = msg["tool_calls"][0]["function"]
                        else:
                            delta["tool_calls"] = [{"index": i, **tc} for i, tc in enumerate(msg["tool_calls"])]
                    await response.write(frame([{"index": idx, "delta": delta, "finish_reason": None,
                                                 "logprobs": None}]))
                finish = item.finish_reason
                if legacy and finish == "tool_calls":
                    finish = "function_call"
                await response.write(frame([{"index": idx, "delta": {}, "finish_reason": finish,
                                             "logprobs": None}]))
            item = await queue.get()
        if include_usage:
            await response.write(frame([], {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                            "total_tokens": prompt_tokens + completion_tokens}))
        await response.write(b"data: [DONE]\n\n")
        await worker
        await response.write_eof()
        return response


class InferenceControl(inference_pb2_grpc.InferenceServicer):
    """Registered before the base model is loaded (gRPC handlers are fixed at start); `server`
    is set once the engine is up, and loads wait for it."""

    def __init__(self) -> None:
        self.server: InferenceServer | None = None
        self._lock = asyncio.Lock()

    @property
    def _server(self) -> InferenceServer:
        assert self.server is not None
        return self.server

    async def LoadAdapter(self, request, context):
        for _ in range(600):
            if self.server is not None:
                break
            await asyncio.sleep(0.5)
        else:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the base model is still loading")
        if request.base_model and request.base_model != self._server.base_id:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"this inference serves {self._server.base_id}, not {request.base_model}")
        async with self._lock:
            try:
                seconds = await asyncio.to_thread(self._server.load, request.model_id, request.adapter_key,
                                                  list(request.pruning_rules))
            except Exception as exc:
                log.exception("loading %s failed", request.model_id)
                await context.abort(grpc.StatusCode.INTERNAL, f"loading the adapter failed: {exc}")
        log.warning("deployed %s (%s) in %.2f s", request.slug, request.model_id, seconds)
        return inference_pb2.LoadResult(load_seconds=seconds)

    async def UnloadAdapter(self, request, context):
        if self.server is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the base model is still loading")
        await asyncio.to_thread(self._server.forget, request.model_id)
        return inference_pb2.Unloaded()

    async def ScoreReward(self, request: inference_pb2.RewardRequest,
                          context: grpc.aio.ServicerContext) -> inference_pb2.RewardResponse:
        from inference.engine import UnknownAdapter
        from inference.rewards import BadConversation, NotARewardModel, parse_conversation

        if self.server is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the base model is still loading")
        if not request.model_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "model_id is required")
        problem: tuple[grpc.StatusCode, str] | None = None
        result: RewardScore | None = None
        try:
            messages, tools = parse_conversation(request.messages_json, request.tools_json)
            result = await self._server.score_reward(request.model_id, messages, tools)
        except BadConversation as exc:
            problem = grpc.StatusCode.INVALID_ARGUMENT, str(exc)
        except NotARewardModel:
            problem = grpc.StatusCode.NOT_FOUND, f"model {request.model_id} is a chat model, not a reward model"
        except UnknownAdapter:
            problem = grpc.StatusCode.NOT_FOUND, f"no reward model {request.model_id} is deployed here"
        except grpc.aio.AioRpcError as exc:  # the registry, asked about a model this server did not know
            problem = (grpc.StatusCode.UNAVAILABLE,
                       f"could not ask the registry about {request.model_id}: {exc.details()}; retry")
        except ReloadFailed as exc:
            problem = grpc.StatusCode.UNAVAILABLE, f"{exc}; retry"
        except Exception as exc:
            log.exception("scoring with reward model %s failed", request.model_id)
            problem = grpc.StatusCode.INTERNAL, f"scoring failed: {type(exc).__name__}: {exc}"
        if problem is not None:
            await context.abort(*problem)
        assert result is not None  # every path without a problem scored
        return inference_pb2.RewardResponse(reward=result.reward, score=result.score, tokens=result.tokens)


async def _watch_client(request: web.Request, gone: threading.Event, every_s: float = 0.05) -> None:
    """Sets `gone` once the client's connection is closed, so a generation nobody waits for stops."""
    while not gone.is_set():
        transport = request.transport
        if transport is None or transport.is_closing():
            gone.set()
            return
        await asyncio.sleep(every_s)
