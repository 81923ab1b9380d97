"""One base model in memory serving many LoRA adapters, OpenAI-shaped in and out.

Why this shape: a fine-tuned model here is a few MB of LoRA weights on a shared base, so serving N models costs one
base in memory plus N adapters, and switching between them is a peft ``set_adapter`` (tens of ms) rather than a
model load. On CPU one generation at a time is as fast as it gets, so a lock serialises requests.

Decoding is a plain token loop over the KV cache rather than ``model.generate``: that gives streaming deltas, stop
strings that never leak a partial match into the stream, ``n`` choices from one prefill, and exact token counts,
without a helper thread. Prompts are rendered by :mod:`refinery.ml.chat_format`, the renderer training used.
"""

from __future__ import annotations

import contextlib
import copy
import json
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refinery.ml.base_models import configure_torch, load_tokenizer
from refinery.ml.chat_format import parse_completion, render_prompt
from refinery.ml.json_prefix import JsonPrefix

_STOP_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|im_start|>")
# Constrained decoding tries the most likely tokens first; past this many it ranks the whole vocabulary.
_CANDIDATES = 64


@dataclass
class GenerationParams:
    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    n: int = 1
    seed: int | None = None
    # From :class:`refinery.ml.chat_format.AnswerShape`: the answer from this offset (prefill included) is decoded
    # as one JSON object, and ``suffix`` is appended once it is complete; ``tool_calls`` False keeps calls as text.
    json_from: int | None = None
    suffix: str = ""
    tool_calls: bool = True


@dataclass
class Completion:
    choices: list[dict]
    prompt_tokens: int
    completion_tokens: int


@dataclass
class StreamPiece:
    """One piece of a streamed choice: a text delta, or (with finish_reason set) the end of that choice."""

    index: int
    delta: str
    finish_reason: str | None = None
    completion_tokens: int = 0
    text: str = ""  # the choice's full text, set on the final piece


class UnknownAdapter(KeyError):
    """No adapter of that name is loaded."""


class GenerationCancelled(Exception):
    """The client left before its answer was done: the generation was stopped, its tokens not spent."""


class _JsonGuard:
    """One choice's JSON constraint: ``state`` has consumed the object's text so far (the prefill's share, then the
    generated text up to ``fed`` characters). A trailing U+FFFD, a character whose UTF-8 bytes are still arriving,
    is checked once complete, and is allowed only inside a string (nothing else in JSON can be non-ASCII)."""

    def __init__(self, state: JsonPrefix) -> None:
        self.state = state
        self.fed = 0

    def admit(self, text: str) -> JsonPrefix | None:
        """The state after the generated text becomes ``text``, or None if that breaks the JSON."""
        stable = text.rstrip("\ufffd")
        if len(stable) < self.fed:
            return None
        state = self.state.copy()
        if not state.feed(stable[self.fed:]):
            return None
        if len(stable) < len(text) and (state.done or not state.in_string):
            return None
        return state

    def commit(self, state: JsonPrefix, text: str) -> None:
        self.state = state
        self.fed = len(text.rstrip("\ufffd"))


def _check_adapter_dir(adapter_dir: Path, base_id: str) -> None:
    """Refuse adapters that cannot serve chat on this base, with a message instead of a shape error."""
    config_path = Path(adapter_dir) / "adapter_config.json"
    if not config_path.is_file():
        raise ValueError(f"{str(adapter_dir)!r} is not a LoRA adapter (no adapter_config.json)")
    config = json.loads(config_path.read_text())
    trained_on = config.get("base_model_name_or_path")
    if trained_on and trained_on != base_id:
        raise ValueError(f"adapter was trained on {trained_on!r}, but this engine serves {base_id!r}")
    if config.get("task_type") not in (None, "CAUSAL_LM"):
        raise ValueError(f"adapter is a {config.get('task_type')} model (a reward model: see inference.rewards), "
                         "not a chat model")


def _held_back(text: str, stops: list[str]) -> int:
    """How many trailing characters might still become a stop string (or are an incomplete UTF-8 character)."""
    hold = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:k]):
                hold = max(hold, k)
                break
    if text.endswith("\ufffd"):
        hold = max(hold, len(text) - len(text.rstrip("\ufffd")))
    return hold


def _first_stop(text: str, stops: list[str], search_from: int) -> int | None:
    cuts = [i for i in (text.find(stop, search_from) for stop in stops if stop) if i >= 0]
    return min(cuts) if cuts else None


class DeltaStreams:
    """``stream`` for an engine that has ``stream_pieces``: what both backends share."""

    def stream_pieces(
        self, adapter: str | None, messages: list[dict], tools: list[dict] | None, params: GenerationParams
    ) -> Iterator[StreamPiece]:
        raise NotImplementedError

    def stream(
        self, adapter: str | None, messages: list[dict], tools: list[dict] | None, params: GenerationParams
    ) -> Iterator[tuple[int, str]]:
        """(choice index, text delta) pieces as they are generated; the caller re-parses the full text at the end.

        Not a generator function: an unknown adapter or an over-long prompt raises here, before any response has
        been started."""
        pieces = self.stream_pieces(adapter, messages, tools, params)
        return ((piece.index, piece.delta) for piece in pieces if piece.delta)


class Engine(DeltaStreams):
    """The base model plus up to ``max_adapters`` LoRA adapters (least recently used evicted first)."""

    def __init__(self, base_dir: Path, base_id: str, max_adapters: int = 32) -> None:
        import torch
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        configure_torch()
        self.base_id = base_id
        self.max_adapters = max_adapters
        self.tokenizer = load_tokenizer(base_dir)
        self._base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
        # References to the transformer's tensors, taken before peft wraps any layer (no copy).
        self._base_weights: dict[str, Any] | None = getattr(self._base, self._base.base_model_prefix).state_dict()
        self._model: Any = self._base
        self._adapters: OrderedDict[str, Path] = OrderedDict()
        self._lock = threading.Lock()
        self.max_context = int(getattr(self._base.config, "max_position_embeddings", 0) or 1 << 30)
        self.last_switch_seconds = 0.0
        vocab = self.tokenizer.get_vocab()
        stop_ids = {vocab[t] for t in _STOP_TOKENS if t in vocab}
        for extra in (self.tokenizer.eos_token_id, self._base.generation_config.eos_token_id):
            stop_ids.update(extra if isinstance(extra, list) else [] if extra is None else [extra])
        self._stop_ids = frozenset(stop_ids)

    def close(self) -> None:
        """Release the weights (waiting for a generation in progress): the process may go on, e.g. in tests."""
        with self._lock:
            self._adapters.clear()
            self._model = self._base = self._base_weights = None

    def base_weights(self) -> dict[str, Any] | None:
        """The base transformer's own tensors (no LoRA layers, no LM head): a reward classifier on this base shares
        them rather than holding a second copy (see :mod:`inference.rewards`). Read-only, for both."""
        return self._base_weights

    # ------------------------------------------------------------------------------------- adapters

    def load_adapter(self, name: str, adapter_dir: Path) -> float:
        """Load (or replace) an adapter; returns the seconds it took."""
        _check_adapter_dir(adapter_dir, self.base_id)
        from peft import PeftModel

        with self._lock:
            started = time.perf_counter()
            if name in self._adapters:
                self._delete(name)
            if self._adapters:
                self._model.load_adapter(str(adapter_dir), adapter_name=name)
            else:
                self._model = PeftModel.from_pretrained(self._base, str(adapter_dir), adapter_name=name)
                self._model.eval()
            self._adapters[name] = Path(adapter_dir)
            while len(self._adapters) > self.max_adapters:
                self._delete(next(iter(self._adapters)))
            return time.perf_counter() - started

    def unload_adapter(self, name: str) -> None:
        with self._lock:
            if name not in self._adapters:
                raise UnknownAdapter(name)
            self._delete(name)

    def adapters(self) -> list[str]:
        return list(self._adapters)

    def _delete(self, name: str) -> None:
        """Caller holds the lock. The last adapter's removal unwraps the base, so LoRA layers cost nothing."""
        del self._adapters[name]
        if not self._adapters:
            self._model = self._model.unload()
            self._base = self._model
            return
        if self._model.active_adapter == name:
            self._model.set_adapter(next(iter(self._adapters)))
        self._model.delete_adapter(name)

    @contextlib.contextmanager
    def _using(self, adapter: str | None) -> Iterator[None]:
        """Caller holds the lock: activate ``adapter``, or run the bare base with every adapter disabled."""
        if adapter is None:
            if self._adapters:
                with self._model.disable_adapter():
                    yield
            else:
                yield
            return
        if adapter not in self._adapters:
            raise UnknownAdapter(adapter)
        started = time.perf_counter()
        if self._model.active_adapter != adapter:
            self._model.set_adapter(adapter)
        self.last_switch_seconds = time.perf_counter() - started
        self._adapters.move_to_end(adapter)
        yield

    # ------------------------------------------------------------------------------------- generation

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def count_tokens(self, messages: list[dict], tools: list[dict] | None) -> int:
        """Prompt tokens of a request, as billed in ``usage.prompt_tokens``."""
        return len(self._encode(render_prompt(messages, tools)[0]))

    def _forward(self, ids: list[int], cache: Any) -> tuple[Any, Any]:
        import torch

        with torch.inference_mode():
            # logits_to_keep=1: only the last position's logits are needed; the prompt's would cost vocab x length.
            out = self._model(input_ids=torch.tensor([ids]), past_key_values=cache, use_cache=True, logits_to_keep=1)
        return out.logits[0, -1], out.past_key_values

    @staticmethod
    def _probs(logits: Any, params: GenerationParams) -> Any:
        """The sampling distribution: softmax at ``temperature``, cut to the ``top_p`` nucleus. Caller is in
        inference mode."""
        import torch

        probs = torch.softmax(logits.float() / params.temperature, dim=-1)
        if 0 < params.top_p < 1:
            sorted_probs, order = torch.sort(probs, descending=True)
            drop = torch.cumsum(sorted_probs, dim=-1) - sorted_probs > params.top_p
            sorted_probs[drop] = 0
            probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
        return probs

    @classmethod
    def _pick(cls, logits: Any, params: GenerationParams, generator: Any) -> int:
        import torch

        with torch.inference_mode():
            if params.temperature <= 0:
                return int(torch.argmax(logits))
            return int(torch.multinomial(cls._probs(logits, params), 1, generator=generator))

    def _pick_json(
        self, logits: Any, params: GenerationParams, generator: Any, generated: list[int], guard: _JsonGuard,
    ) -> tuple[int, str, JsonPrefix] | None:
        """The token to generate when the answer must stay a JSON object: the sampled (or, at temperature 0, the most
        likely) token if it keeps the text valid, else the next most likely that does. Returns the token, the text
        with it and the guard's state after it; None only if no token of the vocabulary continues the JSON."""
        import torch

        tried: set[int] = set()

        def admitted(token: int) -> tuple[int, str, JsonPrefix] | None:
            tried.add(token)
            if token in self._stop_ids:  # the end of the turn, while the object is still open
                return None
            text = self.tokenizer.decode([*generated, token], skip_special_tokens=False,
                                         clean_up_tokenization_spaces=False)
            state = guard.admit(text)
            return None if state is None else (token, text, state)

        with torch.inference_mode():
            if params.temperature > 0:
                probs = self._probs(logits, params)
                for _ in range(_CANDIDATES):
                    if float(probs.sum()) <= 0:
                        break
                    token = int(torch.multinomial(probs, 1, generator=generator))
                    if (found := admitted(token)) is not None:
                        return found
                    probs[token] = 0
            top = torch.topk(logits, min(_CANDIDATES, logits.shape[-1])).indices.tolist()
            for token in top:
                if token not in tried and (found := admitted(token)) is not None:
                    return found
            for token in torch.argsort(logits, descending=True).tolist():
                if token not in tried and (found := admitted(token)) is not None:
                    return found
        return None

    def _decode_choice(
        self, index: int, logits: Any, cache: Any, prompt_len: int, prefill: str, params: GenerationParams,
        generator: Any, json_state: JsonPrefix | None = None,
    ) -> Iterator[StreamPiece]:
        """One choice, token by token. Yields the prefill first, then deltas that are safe to show (no partial stop
        string, no half UTF-8 character), then a final piece with the finish reason.

        With ``json_state`` (the state after the prefill's share of the object) every token keeps the answer a valid
        beginning of a JSON object, and the choice ends once the object is complete, with ``params.suffix``."""
        if prefill:
            yield StreamPiece(index, prefill)
        stops = [s for s in params.stop if s]
        budget = max(0, min(params.max_tokens, self.max_context - prompt_len))
        guard = _JsonGuard(json_state.copy()) if json_state is not None else None
        generated: list[int] = []
        text, emitted, finish, sampled = "", 0, "length", 0
        if guard is not None and guard.state.done:  # the prefill already holds the whole object
            budget, finish = 0, "stop"
        while sampled < budget:
            if guard is None:
                token = self._pick(logits, params, generator)
                candidate = None
            else:
                candidate = self._pick_json(logits, params, generator, generated, guard)
                if candidate is None:  # no token continues the JSON (no byte-level vocabulary gets here)
                    finish = "stop"
                    break
                token = candidate[0]
            sampled += 1
            if token in self._stop_ids:
                finish = "stop"
                break
            generated.append(token)
            if candidate is not None and guard is not None:
                text = candidate[1]
                guard.commit(candidate[2], text)
            else:
                text = self.tokenizer.decode(generated, skip_special_tokens=False, clean_up_tokenization_spaces=False)
            cut = _first_stop(text, stops, max(0, emitted - max((len(s) for s in stops), default=0)))
            if cut is not None:
                text, finish = text[:cut], "stop"
                break
            if guard is not None and guard.state.done:
                finish = "stop"
                break
            safe = len(text) - _held_back(text, stops)
            if safe > emitted:
                yield StreamPiece(index, text[emitted:safe])
                emitted = safe
            if sampled < budget:
                logits, cache = self._forward([token], cache)
        text = text.rstrip("\ufffd")  # a character cut off mid-way by the end of generation
        if guard is not None and guard.state.done:
            text += params.suffix
        if len(text) > emitted:
            yield StreamPiece(index, text[emitted:])
        full = prefill + text
        if finish != "length" and params.tool_calls and parse_completion(full).get("tool_calls"):
            finish = "tool_calls"
        yield StreamPiece(index, "", finish_reason=finish, completion_tokens=sampled, text=full)

    def stream_pieces(
        self, adapter: str | None, messages: list[dict], tools: list[dict] | None, params: GenerationParams
    ) -> Iterator[StreamPiece]:
        """Every choice in turn, as StreamPieces. Holds the generation lock until exhausted or closed."""
        if params.n < 1:
            raise ValueError(f"n must be at least 1, got {params.n}")
        if adapter is not None and adapter not in self._adapters:
            raise UnknownAdapter(adapter)
        prompt, prefill = render_prompt(messages, tools)
        prompt_ids = self._encode(prompt)
        if len(prompt_ids) >= self.max_context:
            raise ValueError(f"the prompt is {len(prompt_ids)} tokens; the model's context is {self.max_context}")
        json_state = None
        if params.json_from is not None:
            json_state = JsonPrefix()
            if not json_state.feed(prefill[params.json_from:]):
                raise ValueError("the prefill does not begin a JSON object, but the answer must be one")
        return self._stream(adapter, prompt_ids, prefill, params, json_state)

    def _stream(
        self, adapter: str | None, prompt_ids: list[int], prefill: str, params: GenerationParams,
        json_state: JsonPrefix | None = None,
    ) -> Iterator[StreamPiece]:
        import torch

        generator = torch.Generator().manual_seed(params.seed if params.seed is not None else random.getrandbits(63))
        with self._lock, self._using(adapter):
            logits, cache = self._forward(prompt_ids, None)
            for index in range(params.n):
                last = index == params.n - 1
                choice_cache = cache if last else copy.deepcopy(cache)
                yield from self._decode_choice(
                    index, logits, choice_cache, len(prompt_ids), prefill, params, generator, json_state,
                )

    def generate(
        self, adapter: str | None, messages: list[dict], tools: list[dict] | None, params: GenerationParams,
        cancelled: threading.Event | None = None,
    ) -> Completion:
        """The whole completion; stopped between two tokens (GenerationCancelled) once `cancelled` is set."""
        prompt_tokens = self.count_tokens(messages, tools)
        choices: list[dict] = []
        completion_tokens = 0
        pieces = self.stream_pieces(adapter, messages, tools, params)
        for piece in pieces:
            if cancelled is not None and cancelled.is_set():
                close = getattr(pieces, "close", None)
                if close is not None:
                    close()  # releases the generation lock now, not when the iterator is collected
                raise GenerationCancelled
            if piece.finish_reason is None:
                continue
            completion_tokens += piece.completion_tokens
            choices.append({
                "index": piece.index,
                "message": parse_completion(piece.text, params.tool_calls),
                "finish_reason": piece.finish_reason,
            })
        return Completion(choices=choices, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
