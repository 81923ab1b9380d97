"""LoRA fine-tuning on CPU: supervised (SFT), preference (DPO) and reward models, with trl.

Why these defaults: on small datasets (tens of examples) the defaults decide whether anything is learnt at all.
Measured on SmolLM2-135M with 40 one-line examples: loss on assistant turns only with lr 1e-3 carries the trained
behaviour to held-out prompts 3/3, while full-sequence loss at lr 2e-4 gives 0/3. So: LoRA r=16 on every linear
layer, lr 1e-3 × the user's multiplier, loss only on the spans our chat template marks with ``{% generation %}``.

Rows are tokenised here rather than by trl: they are rendered by :mod:`refinery.ml.chat_format` (the same renderer
the inference engine prompts with) and each rendered piece is tokenised on its own, so the prompt/answer token
boundary is exactly the one the model meets when it generates. It also keeps arbitrary tool JSON schemas out of
Arrow tables, which cannot hold heterogeneous nested structs.

Heavy imports (torch, transformers, peft, trl, datasets) happen inside functions, so importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refinery.ml.base_models import configure_torch, load_tokenizer
from refinery.ml.chat_format import is_prefill, render_with_spans
from refinery.ml.reward_scoring import (
    META_FILE,
    REWARD_KIND,
    conversation_ids,
    encode,
    output_text,
    prompt_text,
    reward_of,
    sequence_classifier,
)

SFT_BASE_LR = 1e-3
# DPO, measured on SmolLM2-135M, 30 pairs x 3 epochs, LoRA r=16, beta 0.1: the held-out mean log-prob margin of
# chosen over rejected went from -23 to -13 at 5e-5 (0/10 pairs flipped), to +12 at 2e-4 (9/10), and to +61 at 1e-3
# (10/10, but greedy answers degenerated into rambling that never stops). trl's 5e-5 is tuned for full fine-tuning.
DPO_BASE_LR = 2e-4
# Reward model, same data: 2e-4 ranks 10/10 held-out pairs correctly (the score head is new, trained alongside).
REWARD_BASE_LR = 2e-4
MIN_TRAIN_ROWS = 10
MAX_AUTO_BATCH = 8
SEED = 42
REFINERY_FILE = META_FILE


@dataclass
class SftParams:
    epochs: int = 3
    learning_rate_multiplier: float = 1.0
    batch_size: int | None = None
    max_length: int = 1024
    lora_r: int = 16
    lora_alpha: int = 32


@dataclass
class DpoParams(SftParams):
    beta: float = 0.1


@dataclass
class TrainEvent:
    kind: str  # "step" | "epoch" | "eval"
    step: int
    total_steps: int
    epoch: float
    loss: float | None = None
    token_accuracy: float | None = None
    eval_loss: float | None = None
    checkpoint_dir: str | None = None


class TrainingError(ValueError):
    """The training input cannot be used; the message says what to fix."""


class Cancelled(Exception):
    """should_stop() turned true: training stopped early and no final adapter was written."""


def _no_event(event: TrainEvent) -> None:
    del event


def _never() -> bool:
    return False


# ----------------------------------------------------------------------------------------- validation


def _final_assistant(row: dict, index: int, what: str) -> None:
    messages = row.get("messages") if isinstance(row, dict) else None
    if not isinstance(messages, list) or not messages:
        raise TrainingError(f"{what}[{index}] has no messages")
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "assistant" or is_prefill(last):
        raise TrainingError(f"{what}[{index}] must end with an assistant message (the output to learn)")
    if len(messages) < 2:
        raise TrainingError(f"{what}[{index}] has no prompt before its assistant message")


def _validate_rows(rows: list[dict], what: str, minimum: int = 0) -> None:
    if minimum and len(rows) < minimum:
        raise TrainingError(f"at least {minimum} training examples are needed, got {len(rows)}")
    for i, row in enumerate(rows):
        _final_assistant(row, i, what)


def _pairs_of(rows: list[dict], what: str, minimum: int = 0) -> list[dict]:
    """The rows that are preference pairs (have a ``rejected_message``), validated."""
    pairs = [row for row in rows if isinstance(row, dict) and row.get("rejected_message")]
    if minimum and not pairs:
        raise TrainingError(f"preference training needs pairs: no {what} example has a rejected_message")
    if minimum and len(pairs) < minimum:
        raise TrainingError(f"at least {minimum} training examples are needed, got {len(pairs)}")
    for i, row in enumerate(pairs):
        _final_assistant(row, i, what)
        rejected = row["rejected_message"]
        if not isinstance(rejected, dict) or rejected.get("role", "assistant") != "assistant":
            raise TrainingError(f"{what}[{i}].rejected_message must be an assistant message")
    return pairs


def _check_init_adapter(init_adapter: Path, base_id: str) -> None:
    config_path = Path(init_adapter) / "adapter_config.json"
    if not config_path.is_file():
        raise TrainingError(f"init_adapter {str(init_adapter)!r} is not a LoRA adapter (no adapter_config.json)")
    trained_on = json.loads(config_path.read_text()).get("base_model_name_or_path")
    if trained_on and trained_on != base_id:
        raise TrainingError(f"init_adapter was trained on {trained_on!r}, not on {base_id!r}")
    meta = Path(init_adapter) / REFINERY_FILE
    if meta.is_file() and json.loads(meta.read_text()).get("kind") == REWARD_KIND:
        raise TrainingError("init_adapter is a reward model, which cannot be the start of a chat model")


# ----------------------------------------------------------------------------------------- tokenising


def _sft_example(tokenizer: Any, row: dict, max_length: int) -> tuple[list[int], list[int]]:
    """input_ids and labels (-100 outside assistant outputs), each rendered piece tokenised on its own."""
    text, spans = render_with_spans(row["messages"], row.get("tools"))
    ids: list[int] = []
    labels: list[int] = []
    cursor = 0
    for start, end in spans:
        prompt_part = encode(tokenizer, text[cursor:start])
        answer_part = encode(tokenizer, text[start:end])
        ids += prompt_part + answer_part
        labels += [-100] * len(prompt_part) + answer_part
        cursor = end
    tail = encode(tokenizer, text[cursor:])
    ids += tail
    labels += [-100] * len(tail)
    return ids[:max_length], labels[:max_length]


def _pair_texts(row: dict) -> tuple[str, str, str]:
    """(prompt ending in the generation prompt, chosen output, rejected output), outputs ending with <|im_end|>
    (rendered by :mod:`refinery.ml.reward_scoring`, which serving reads conversations with too)."""
    prompt_messages = row["messages"][:-1]
    tools = row.get("tools")
    return (prompt_text(prompt_messages, tools), output_text(prompt_messages, row["messages"][-1], tools),
            output_text(prompt_messages, row["rejected_message"], tools))


def _pair_example(tokenizer: Any, row: dict) -> dict[str, list[int]]:
    prompt, chosen, rejected = _pair_texts(row)
    return {
        "prompt_ids": encode(tokenizer, prompt),
        "chosen_ids": encode(tokenizer, chosen),
        "rejected_ids": encode(tokenizer, rejected),
    }


# ----------------------------------------------------------------------------------------- models


def _prepare_runtime() -> None:
    """Progress bars and load reports are noise in a job log; also sets torch's thread count."""
    import datasets
    import transformers

    configure_torch()

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    datasets.disable_progress_bars()


def _causal_lm(base_dir: Path, tokenizer: Any) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def _lora(r: int, alpha: int, task_type: str) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules="all-linear", task_type=task_type)


def _with_init_adapter(model: Any, init_adapter: Path) -> Any:
    """Continue training an existing adapter. For DPO, trl copies it into a frozen "ref" adapter and uses that as
    the reference policy, so the preference is learnt relative to the model being improved, not the raw base."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)


def _save_adapter(model: Any, target: Path, base_id: str, extra: dict | None = None) -> None:
    """The trainable adapter only, recorded against the base's id (peft would write a local path)."""
    target.mkdir(parents=True, exist_ok=True)
    # save_embedding_layers=False: "auto" looks the base id up on the hub (LoRA on linear layers never changes
    # embeddings, and offline that lookup only costs a timeout).
    model.save_pretrained(str(target), selected_adapters=["default"], save_embedding_layers=False)
    config_path = target / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = base_id
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True))
    (target / "README.md").unlink(missing_ok=True)
    if extra is not None:
        (target / REFINERY_FILE).write_text(json.dumps(extra, indent=2))


# ----------------------------------------------------------------------------------------- progress


def _callback(
    on_event: Callable[[TrainEvent], None],
    should_stop: Callable[[], bool],
    out_dir: Path,
    base_id: str,
    kind: str,
) -> Any:
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        """Turns Trainer hooks into TrainEvents, writes a checkpoint per epoch, and polls for cancellation."""

        def __init__(self) -> None:
            self.cancelled = False
            self.last_loss: float | None = None
            self.eval_metrics: dict[str, float] = {}
            self.model: Any = None

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if should_stop():
                self.cancelled = True
                control.should_training_stop = True
                control.should_epoch_stop = True
                control.should_evaluate = False
                control.should_save = False

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
            logs = logs or {}
            if "loss" not in logs:
                return
            self.last_loss = float(logs["loss"])
            accuracy = logs.get("mean_token_accuracy")
            on_event(TrainEvent(
                kind="step", step=state.global_step, total_steps=state.max_steps,
                epoch=float(logs.get("epoch", state.epoch or 0.0)), loss=self.last_loss,
                token_accuracy=None if accuracy is None else float(accuracy),
            ))

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.cancelled:
                return
            number = max(1, round(state.epoch or 0))
            checkpoint = out_dir / "checkpoints" / f"epoch-{number}"
            model = kwargs.get("model")
            _save_adapter(self.model if model is None else model, checkpoint, base_id, {
                "base_model": base_id, "kind": kind, "epoch": number, "metrics": {"loss": self.last_loss},
            })
            on_event(TrainEvent(
                kind="epoch", step=state.global_step, total_steps=state.max_steps, epoch=float(state.epoch or 0.0),
                loss=self.last_loss, checkpoint_dir=str(checkpoint),
            ))

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict | None = None,
                        **kwargs: Any) -> None:
            self.eval_metrics = {k: float(v) for k, v in (metrics or {}).items() if isinstance(v, int | float)}
            eval_loss = self.eval_metrics.get("eval_loss")
            on_event(TrainEvent(
                kind="eval", step=state.global_step, total_steps=state.max_steps, epoch=float(state.epoch or 0.0),
                eval_loss=eval_loss,
            ))

    return Progress()


def _common_args(params: SftParams | DpoParams, n_train: int, has_eval: bool, out_dir: Path, lr: float) -> dict:
    """TrainingArguments shared by the three trainers: CPU, fp32, no gradient checkpointing, no Trainer saves."""
    if params.epochs < 1:
        raise TrainingError(f"epochs must be at least 1, got {params.epochs}")
    if params.learning_rate_multiplier <= 0:
        raise TrainingError(f"learning_rate_multiplier must be positive, got {params.learning_rate_multiplier}")
    batch = params.batch_size or min(MAX_AUTO_BATCH, n_train)
    if batch < 1:
        raise TrainingError(f"batch_size must be at least 1, got {batch}")
    return {
        "output_dir": str(out_dir / "trainer"),
        "num_train_epochs": params.epochs,
        "per_device_train_batch_size": batch,
        "per_device_eval_batch_size": batch,
        "gradient_accumulation_steps": 1,
        "learning_rate": lr * params.learning_rate_multiplier,
        "logging_steps": 1,
        "save_strategy": "no",
        "eval_strategy": "epoch" if has_eval else "no",
        "report_to": [],
        "use_cpu": True,
        "bf16": False,
        "fp16": False,
        "activation_checkpointing": False,  # transformers 5.23's name for gradient checkpointing (trl turns it on)
        "seed": SEED,
        "data_seed": SEED,
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
        "max_length": params.max_length,
    }


def _run(trainer: Any, progress: Any, train_tokens_per_epoch: int, epochs: int) -> dict:
    """Train, raise Cancelled if asked to stop, and return the common metrics."""
    started = time.monotonic()
    output = trainer.train()
    seconds = time.monotonic() - started
    if progress.cancelled:
        raise Cancelled(f"training cancelled at step {trainer.state.global_step}")
    epochs_done = trainer.state.epoch or epochs
    train_tokens = int(train_tokens_per_epoch * epochs_done)
    return {
        "train_loss": float(output.training_loss),
        "eval_loss": progress.eval_metrics.get("eval_loss"),
        "steps": int(trainer.state.global_step),
        "epochs": epochs,
        "train_tokens": train_tokens,
        "seconds": round(seconds, 3),
        "tokens_per_second": round(train_tokens / seconds, 1) if seconds > 0 else 0.0,
    }


def _detach_printer(trainer: Any) -> None:
    """With tqdm off, Trainer prints every log dict to stdout; progress goes through on_event instead."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)


def _finish(model: Any, out_dir: Path, base_id: str, kind: str, metrics: dict) -> dict:
    _save_adapter(model, out_dir / "adapter", base_id, {"base_model": base_id, "kind": kind, "metrics": metrics})
    with contextlib.suppress(OSError):  # the Trainer's output_dir, left empty since it saves nothing itself
        (out_dir / "trainer").rmdir()
    return metrics


def _dataset(columns: dict[str, list]) -> Any:
    from datasets import Dataset

    return Dataset.from_dict(columns)


# ----------------------------------------------------------------------------------------- SFT


def train_sft(
    base_dir: Path,
    base_id: str,
    train_rows: list[dict],
    eval_rows: list[dict],
    out_dir: Path,
    params: SftParams,
    on_event: Callable[[TrainEvent], None] = _no_event,
    should_stop: Callable[[], bool] = _never,
    init_adapter: Path | None = None,
) -> dict:
    """Supervised LoRA fine-tuning on the assistant outputs of OpenAI-shaped rows; the adapter goes to
    ``out_dir/adapter``. Returns the metrics also written to ``out_dir/adapter/refinery.json``."""
    _validate_rows(train_rows, "train", MIN_TRAIN_ROWS)
    _validate_rows(eval_rows, "eval")
    if init_adapter is not None:
        _check_init_adapter(init_adapter, base_id)
    if should_stop():
        raise Cancelled("training cancelled before it started")

    import transformers
    from trl import SFTConfig, SFTTrainer

    _prepare_runtime()
    transformers.set_seed(SEED)
    out_dir = Path(out_dir)
    tokenizer = load_tokenizer(base_dir)
    train = [_sft_example(tokenizer, row, params.max_length) for row in train_rows]
    evals = [_sft_example(tokenizer, row, params.max_length) for row in eval_rows]
    train = [example for example in train if any(label != -100 for label in example[1])]
    if len(train) < MIN_TRAIN_ROWS:
        raise TrainingError(
            f"at least {MIN_TRAIN_ROWS} training examples are needed, got {len(train)} whose assistant output fits "
            f"in max_length={params.max_length} tokens"
        )
    evals = [example for example in evals if any(label != -100 for label in example[1])]

    model = _causal_lm(base_dir, tokenizer)
    peft_config = None
    if init_adapter is not None:
        model = _with_init_adapter(model, init_adapter)
    else:
        peft_config = _lora(params.lora_r, params.lora_alpha, "CAUSAL_LM")

    progress = _callback(on_event, should_stop, out_dir, base_id, "sft")
    config = SFTConfig(**_common_args(params, len(train), bool(evals), out_dir, SFT_BASE_LR))
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=_dataset({"input_ids": [e[0] for e in train], "labels": [e[1] for e in train]}),
        eval_dataset=_dataset({"input_ids": [e[0] for e in evals], "labels": [e[1] for e in evals]}) if evals else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[progress],
    )
    _detach_printer(trainer)
    progress.model = trainer.model
    metrics = _run(trainer, progress, sum(len(e[0]) for e in train), params.epochs)
    return _finish(trainer.model, out_dir, base_id, "sft", metrics)


# ----------------------------------------------------------------------------------------- DPO


def _pair_dataset(tokenizer: Any, pairs: list[dict]) -> tuple[Any, int]:
    encoded = [_pair_example(tokenizer, row) for row in pairs]
    tokens = sum(2 * len(e["prompt_ids"]) + len(e["chosen_ids"]) + len(e["rejected_ids"]) for e in encoded)
    return _dataset({key: [e[key] for e in encoded] for key in ("prompt_ids", "chosen_ids", "rejected_ids")}), tokens


def train_dpo(
    base_dir: Path,
    base_id: str,
    pairs: list[dict],
    eval_pairs: list[dict],
    out_dir: Path,
    params: DpoParams,
    on_event: Callable[[TrainEvent], None] = _no_event,
    should_stop: Callable[[], bool] = _never,
    init_adapter: Path | None = None,
) -> dict:
    """Direct preference optimisation of a LoRA adapter on (prompt, chosen, rejected) pairs.

    Without ``init_adapter`` a fresh adapter is trained against the base model as reference; with one (SFT then
    DPO) that adapter is trained further against a frozen copy of itself."""
    train_pairs = _pairs_of(pairs, "train", MIN_TRAIN_ROWS)
    test_pairs = _pairs_of(eval_pairs, "eval")
    if init_adapter is not None:
        _check_init_adapter(init_adapter, base_id)
    if should_stop():
        raise Cancelled("training cancelled before it started")

    import transformers
    from trl import DPOConfig, DPOTrainer

    class PretokenizedDPOTrainer(DPOTrainer):
        """Rows arrive tokenised by our renderer (see the module docstring), so trl's own preparation is skipped."""

        def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
            return dataset

    _prepare_runtime()
    transformers.set_seed(SEED)
    out_dir = Path(out_dir)
    tokenizer = load_tokenizer(base_dir)
    train_set, train_tokens = _pair_dataset(tokenizer, train_pairs)
    eval_set = _pair_dataset(tokenizer, test_pairs)[0] if test_pairs else None

    model = _causal_lm(base_dir, tokenizer)
    peft_config = None
    if init_adapter is not None:
        model = _with_init_adapter(model, init_adapter)
    else:
        peft_config = _lora(params.lora_r, params.lora_alpha, "CAUSAL_LM")

    progress = _callback(on_event, should_stop, out_dir, base_id, "dpo")
    config = DPOConfig(
        beta=params.beta,
        **_common_args(params, len(train_pairs), eval_set is not None, out_dir, DPO_BASE_LR),
    )
    trainer = PretokenizedDPOTrainer(
        model=model, args=config, train_dataset=train_set, eval_dataset=eval_set,
        processing_class=tokenizer, peft_config=peft_config, callbacks=[progress],
    )
    _detach_printer(trainer)
    progress.model = trainer.model
    metrics = _run(trainer, progress, train_tokens, params.epochs)
    return _finish(trainer.model, out_dir, base_id, "dpo", metrics)


# ----------------------------------------------------------------------------------------- reward model


def _reward_dataset(tokenizer: Any, pairs: list[dict], max_length: int) -> tuple[Any, int]:
    chosen, rejected = [], []
    for row in pairs:
        prompt, good, bad = _pair_texts(row)
        # Keep the end: the score is read at the last token, so that is the part that must survive truncation.
        chosen.append(conversation_ids(tokenizer, prompt, good, max_length))
        rejected.append(conversation_ids(tokenizer, prompt, bad, max_length))
    tokens = sum(len(ids) for ids in chosen) + sum(len(ids) for ids in rejected)
    return _dataset({"chosen_ids": chosen, "rejected_ids": rejected}), tokens


def train_reward(
    base_dir: Path,
    base_id: str,
    pairs: list[dict],
    eval_pairs: list[dict],
    out_dir: Path,
    params: DpoParams,
    on_event: Callable[[TrainEvent], None] = _no_event,
    should_stop: Callable[[], bool] = _never,
) -> dict:
    """A reward model (one scalar per conversation) with a LoRA adapter plus a trained score head; the returned
    metrics add ``eval_accuracy``: the share of eval pairs whose chosen output scores above the rejected one."""
    train_pairs = _pairs_of(pairs, "train", MIN_TRAIN_ROWS)
    test_pairs = _pairs_of(eval_pairs, "eval")
    if should_stop():
        raise Cancelled("training cancelled before it started")

    import transformers
    from trl import RewardConfig, RewardTrainer

    _prepare_runtime()
    transformers.set_seed(SEED)
    out_dir = Path(out_dir)
    tokenizer = load_tokenizer(base_dir)
    train_set, train_tokens = _reward_dataset(tokenizer, train_pairs, params.max_length)
    eval_set = _reward_dataset(tokenizer, test_pairs, params.max_length)[0] if test_pairs else None

    model = sequence_classifier(base_dir, tokenizer)

    progress = _callback(on_event, should_stop, out_dir, base_id, REWARD_KIND)
    config = RewardConfig(**_common_args(params, len(train_pairs), eval_set is not None, out_dir, REWARD_BASE_LR))
    trainer = RewardTrainer(
        model=model, args=config, train_dataset=train_set, eval_dataset=eval_set, processing_class=tokenizer,
        peft_config=_lora(params.lora_r, params.lora_alpha, "SEQ_CLS"), callbacks=[progress],
    )
    _detach_printer(trainer)
    progress.model = trainer.model
    metrics = _run(trainer, progress, train_tokens, params.epochs)
    if test_pairs:
        scores = _score_with(trainer.model, tokenizer, test_pairs, params.max_length)
        metrics["eval_accuracy"] = sum(c > r for c, r in scores) / len(scores)
    else:
        metrics["eval_accuracy"] = None
    return _finish(trainer.model, out_dir, base_id, REWARD_KIND, metrics)


def _score_with(model: Any, tokenizer: Any, pairs: list[dict], max_length: int) -> list[tuple[float, float]]:
    model.eval()
    scores = []
    for row in pairs:
        prompt, good, bad = _pair_texts(row)
        scores.append((reward_of(model, conversation_ids(tokenizer, prompt, good, max_length)),
                       reward_of(model, conversation_ids(tokenizer, prompt, bad, max_length))))
    return scores


def score_pairs(base_dir: Path, adapter_dir: Path, pairs: list[dict]) -> list[tuple[float, float]]:
    """(chosen score, rejected score) for each pair under a trained reward model."""
    from peft import PeftModel

    _prepare_runtime()
    tokenizer = load_tokenizer(base_dir)
    model = PeftModel.from_pretrained(sequence_classifier(base_dir, tokenizer), str(adapter_dir))
    return _score_with(model, tokenizer, _pairs_of(pairs, "scored"), 1 << 16)


def completion_logprobs(base_dir: Path, adapter_dir: Path | None, pairs: list[dict]) -> list[tuple[float, float]]:
    """(log p(chosen | prompt), log p(rejected | prompt)) under the base model or base + adapter: the quantity DPO
    moves, so a test or an evaluation can see whether preferences were learnt."""
    import torch
    from peft import PeftModel

    _prepare_runtime()
    tokenizer = load_tokenizer(base_dir)
    model = _causal_lm(base_dir, tokenizer)
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(model, str(adapter_dir))
    model.eval()
    out = []
    with torch.inference_mode():
        for row in _pairs_of(pairs, "scored"):
            example = _pair_example(tokenizer, row)
            prompt = example["prompt_ids"]
            pair = []
            for key in ("chosen_ids", "rejected_ids"):
                ids = torch.tensor([prompt + example[key]])
                logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1]
                logp = torch.log_softmax(logits.float(), dim=-1)
                target = torch.tensor(example[key])
                pair.append(float(logp.gather(1, target[:, None]).sum()))
            out.append((pair[0], pair[1]))
    return out


__all__ = [
    "Cancelled",
    "DpoParams",
    "SftParams",
    "TrainEvent",
    "TrainingError",
    "completion_logprobs",
    "score_pairs",
    "train_dpo",
    "train_reward",
    "train_sft",
]
