"""Reward models served next to the chat adapters: one sequence classifier on the base, many reward adapters.

A trained reward model is a LoRA adapter plus a score head on the base model read as a sequence classifier, so the
shape that serves many chat adapters serves these too: one classifier in memory, each reward model a peft adapter
on it (its score head is a peft ``modules_to_save`` copy, switched with the adapter), at most ``max_models`` of
them, the least recently used evicted first (the server loads an evicted one again on its next request). The
classifier's transformer is not a second copy of the base when the chat engine has one in memory: it shares the
engine's tensors (frozen in both, and LoRA never writes to them), so a reward model costs its adapter's few MB.

On the GPU backend (vLLM) reward scoring stays here, on the CPU, with its own copy of the base: a reward model reads
one conversation per call and no generation, which a 135M-parameter model does in tens of milliseconds on a core.

Conversations are read exactly as training read them (:mod:`refinery.ml.reward_scoring`), so a served score is the
score the trainer measured its held-out accuracy with.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from refinery.ml.base_models import configure_torch, load_tokenizer
from refinery.ml.chat_format import is_prefill
from refinery.ml.reward_scoring import REWARD_TASK, RewardScore, conversation_ids, output_text, prompt_text, reward_of
from refinery.runtime.executors import Purpose

from inference.engine import UnknownAdapter

log = logging.getLogger("refinery.inference")

# Scoring is CPU-bound and the classifier runs one conversation at a time: one thread, apart from the default
# executor (and so from adapter loads and chat streams), queues scoring requests instead of starving others.
SCORING = Purpose("inference.reward-scoring", workers=1)

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_WARM_UP = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]


class BadConversation(ValueError):
    """The conversation cannot be scored; the message says why."""


class NotARewardModel(LookupError):
    """The model is deployed here, but it is a chat model."""


def _json(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadConversation(f"{what} is not valid JSON: {exc}") from exc


def parse_conversation(messages_json: bytes, tools_json: bytes = b"") -> tuple[list[dict], list[dict] | None]:
    """The messages and tools of a scoring request, checked: a non-empty array of messages ending with the assistant
    message to score (not a prefill), and tools, when given, an array of objects."""
    if not messages_json:
        raise BadConversation("messages_json is required: the conversation to score")
    messages = _json(messages_json, "messages_json")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise BadConversation("messages must be a non-empty array of message objects")
    for i, message in enumerate(messages):
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise BadConversation(f"messages[{i}].role must be one of {', '.join(sorted(ROLES))}, got {role!r}")
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise BadConversation(f"messages[{i}].content must be a string, an array of parts or null")
    last = messages[-1]
    if last["role"] != "assistant" or is_prefill(last):
        raise BadConversation("the conversation must end with an assistant message: the output to score")
    tools = _json(tools_json, "tools_json") if tools_json else None
    if tools is not None and (not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools)):
        raise BadConversation("tools must be an array of tool objects")
    return messages, tools or None


def check_reward_adapter(adapter_dir: Path, base_id: str) -> None:
    """Refuse, with a message, an artifact that is not a reward model of this base."""
    config_path = Path(adapter_dir) / "adapter_config.json"
    if not config_path.is_file():
        raise ValueError(f"{str(adapter_dir)!r} is not a LoRA adapter (no adapter_config.json)")
    config = json.loads(config_path.read_text())
    trained_on = config.get("base_model_name_or_path")
    if trained_on and trained_on != base_id:
        raise ValueError(f"reward model was trained on {trained_on!r}, but this engine serves {base_id!r}")
    if config.get("task_type") != REWARD_TASK:
        raise ValueError(f"adapter is a {config.get('task_type')} model, not a reward model ({REWARD_TASK})")


class RewardModels:
    """The reward models in memory (see the module docstring). Thread-safe: one scoring or load at a time."""

    def __init__(self, base_dir: Path, base_id: str, max_models: int = 32,
                 base_weights: Callable[[], Mapping[str, Any] | None] | None = None) -> None:
        if max_models < 1:
            raise ValueError(f"max_models must be at least 1, got {max_models}")
        self.base_dir = Path(base_dir)
        self.base_id = base_id
        self.max_models = max_models
        self._base_weights = base_weights
        self._tokenizer: Any = None
        self._classifier: Any = None  # the bare classifier, created with the first reward model
        self._model: Any = None  # the classifier wrapped by peft, once a reward model is loaded
        self._loaded: OrderedDict[str, Path] = OrderedDict()
        self._lock = threading.Lock()
        self.max_context = 1 << 30

    # ---------------------------------------------------------------------------------------- models

    def _ensure_classifier(self) -> None:
        """Caller holds the lock."""
        if self._classifier is not None:
            return
        from refinery.ml.reward_scoring import sequence_classifier
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()  # the load report lists the fresh score head as missing, every time
        configure_torch()
        started = time.perf_counter()
        self._tokenizer = load_tokenizer(self.base_dir)
        shared = self._base_weights() if self._base_weights is not None else None
        try:
            self._classifier = sequence_classifier(self.base_dir, self._tokenizer, shared)
        except RuntimeError:
            if shared is None:
                raise
            log.warning("the chat engine's weights do not fit a classifier of %s; loading a copy", self.base_id)
            self._classifier = sequence_classifier(self.base_dir, self._tokenizer)
        self._classifier.eval()
        self.max_context = int(getattr(self._classifier.config, "max_position_embeddings", 0) or 1 << 30)
        log.info("reward classifier on %s ready in %.2f s (%s)", self.base_id, time.perf_counter() - started,
                 "sharing the chat engine's weights" if shared is not None else "its own weights")

    def load(self, name: str, adapter_dir: Path) -> float:
        """Load (or replace) a reward model; returns the seconds it took."""
        check_reward_adapter(adapter_dir, self.base_id)
        from peft import PeftModel

        with self._lock:
            started = time.perf_counter()
            self._ensure_classifier()
            if name in self._loaded:
                self._delete(name)
            if self._model is None:
                self._model = PeftModel.from_pretrained(self._classifier, str(adapter_dir), adapter_name=name)
                self._model.eval()
            else:
                self._model.load_adapter(str(adapter_dir), adapter_name=name)
            self._loaded[name] = Path(adapter_dir)
            while len(self._loaded) > self.max_models:
                self._delete(next(iter(self._loaded)))
            return time.perf_counter() - started

    def unload(self, name: str) -> None:
        with self._lock:
            if name not in self._loaded:
                raise UnknownAdapter(name)
            self._delete(name)

    def names(self) -> list[str]:
        return list(self._loaded)

    def _delete(self, name: str) -> None:
        """Caller holds the lock. The last reward model's removal unwraps the classifier and lets it go (it is
        made again, in well under a second when it shares the engine's weights, with the next reward model)."""
        del self._loaded[name]
        if not self._loaded:  # peft changed the classifier in place: both go, and are made afresh
            self._model = self._classifier = None
            return
        if self._model.active_adapter == name:
            self._model.set_adapter(next(iter(self._loaded)))
        self._model.delete_adapter(name)

    def close(self) -> None:
        with self._lock:
            self._loaded.clear()
            self._model = self._classifier = None

    # ---------------------------------------------------------------------------------------- scoring

    def warm_up(self, name: str) -> RewardScore:
        """Deployed means it answers: one short conversation through the new reward model."""
        return self.score(name, _WARM_UP, None)

    def score(self, name: str, messages: list[dict], tools: list[dict] | None) -> RewardScore:
        """The reward model's verdict on the conversation's last (assistant) message. UnknownAdapter when it is
        not loaded (evicted, or never loaded); BadConversation when the conversation cannot be rendered."""
        import jinja2

        if name not in self._loaded:
            raise UnknownAdapter(name)
        try:  # rendered before the lock is taken; what the template cannot render is the conversation's fault
            prompt = prompt_text(messages[:-1], tools)
            output = output_text(messages[:-1], messages[-1], tools)
        except (jinja2.TemplateError, TypeError, ValueError, LookupError, AttributeError) as exc:
            raise BadConversation(f"the conversation cannot be rendered: {exc}") from exc
        with self._lock:
            if name not in self._loaded:
                raise UnknownAdapter(name)
            ids = conversation_ids(self._tokenizer, prompt, output, self.max_context)
            if self._model.active_adapter != name:
                self._model.set_adapter(name)
            self._loaded.move_to_end(name)
            return RewardScore(reward=reward_of(self._model, ids), tokens=len(ids))
