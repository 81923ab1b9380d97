"""How a reward model reads a conversation: one definition for training, the trainer's evaluation and serving.

A reward model here is the base model as a sequence classifier (one label) with a LoRA adapter and a trained score
head, and its verdict is the head's value at the last token of the conversation. What that value means depends on
exactly which tokens came before it, so the text is built in one place: the prompt is the conversation before the
last assistant message rendered up to the generation prompt, the output is that message as our chat template
renders it (its ``<|im_end|>`` included), and each is tokenised on its own, as the training rows were. A
conversation longer than the model keeps its end, where the score is read.

Heavy imports (torch, transformers) happen inside functions, so importing this module is cheap.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refinery.ml.chat_format import render, render_with_spans

META_FILE = "refinery.json"
"""Written by the trainer next to every adapter: its base, its kind (``sft``, ``dpo`` or ``reward``), its metrics."""
REWARD_KIND = "reward"
REWARD_TASK = "SEQ_CLS"  # peft's task type of a sequence-classification adapter


@dataclass(frozen=True)
class RewardScore:
    reward: float  # the score head's raw value
    tokens: int  # tokens the model read

    @property
    def score(self) -> float:
        """The reward squashed into [0, 1] (the judge API's score): the probability, under the Bradley-Terry model
        the reward was trained with, that this output beats one that scores 0."""
        import math

        if self.reward >= 0:
            return 1.0 / (1.0 + math.exp(-self.reward))
        z = math.exp(self.reward)
        return z / (1.0 + z)


def is_reward_adapter(adapter_dir: Path) -> bool:
    """Whether a trained artifact is a reward model: a sequence-classification adapter, or marked so by the trainer."""
    adapter_dir = Path(adapter_dir)
    config_path = adapter_dir / "adapter_config.json"
    if config_path.is_file() and json.loads(config_path.read_text()).get("task_type") == REWARD_TASK:
        return True
    meta = adapter_dir / META_FILE
    return meta.is_file() and json.loads(meta.read_text()).get("kind") == REWARD_KIND


def encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def output_text(prompt_messages: list[dict], message: dict, tools: list[dict] | None) -> str:
    """An assistant message as the template renders it after ``prompt_messages``, ending with ``<|im_end|>``."""
    message = {k: v for k, v in message.items() if k != "weight"}  # weight 0 would drop its generation markers
    message["role"] = "assistant"
    text, spans = render_with_spans([*prompt_messages, message], tools)
    start, end = spans[-1]
    return text[start:end]


def prompt_text(prompt_messages: list[dict], tools: list[dict] | None) -> str:
    """The conversation before the output, ending with the generation prompt."""
    return render(prompt_messages, tools, add_generation_prompt=True)


def conversation_ids(tokenizer: Any, prompt: str, output: str, max_length: int) -> list[int]:
    """The prompt's tokens then the output's, each tokenised on its own; the last ``max_length`` of them."""
    return (encode(tokenizer, prompt) + encode(tokenizer, output))[-max_length:]


def reward_ids(tokenizer: Any, messages: list[dict], tools: list[dict] | None, max_length: int) -> list[int]:
    """The tokens a reward model reads for a conversation that ends with the assistant message it scores."""
    prompt_messages = messages[:-1]
    return conversation_ids(tokenizer, prompt_text(prompt_messages, tools),
                            output_text(prompt_messages, messages[-1], tools), max_length)


def sequence_classifier(base_dir: Path, tokenizer: Any, base_weights: Mapping[str, Any] | None = None) -> Any:
    """The base model with a one-label score head (its values only matter until an adapter's trained head replaces
    them). With ``base_weights`` (the state dict of the base's transformer, e.g. of a causal LM already in memory
    on the same base) the classifier shares those tensors and lets its own copy go.

    Why load a copy only to drop it: ``from_pretrained`` reads the weights in a fraction of a second, while building
    the model from its config initialises every tensor at random first (3 s for 135M parameters on one core), and
    a model built on the meta device lacks the buffers its constructor computes."""
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(base_dir, num_labels=1, dtype=torch.float32)
    if base_weights is not None:
        body = getattr(model, model.base_model_prefix)
        # strict: every tensor of the body must come from the shared weights, or the scores would differ.
        body.load_state_dict(dict(base_weights), strict=True, assign=True)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def reward_of(model: Any, ids: list[int]) -> float:
    """The score head's value for one unpadded sequence. Caller puts the model in eval mode."""
    import torch

    with torch.inference_mode():
        return float(model(input_ids=torch.tensor([ids])).logits[0, 0])
