"""inference's settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from refinery.config import ObjectStoreSettings


class InferenceSettings(ObjectStoreSettings):
    host: str = "127.0.0.1"
    port: int = Field(default=8201, alias="REFINERY_INFERENCE_PORT")
    grpc_host: str = "127.0.0.1"
    grpc_port: int = Field(default=50081, alias="REFINERY_INFERENCE_GRPC_PORT")
    base_model: str = Field(default="HuggingFaceTB/SmolLM2-135M-Instruct", alias="REFINERY_INFERENCE_BASE_MODEL")
    registry_grpc: str | None = None
    s3_bucket: str = "refinery-models"
    max_adapters: int = 32
    backend: Literal["auto", "transformers", "vllm"] = Field(
        default="auto", alias="REFINERY_INFERENCE_BACKEND",
        description="auto: vLLM when it is importable and CUDA is available, else the transformers (CPU) engine.")
    vllm_max_loras: int = Field(
        default=8, ge=1, alias="REFINERY_INFERENCE_VLLM_MAX_LORAS",
        description="vLLM only: distinct adapters in one GPU batch (capped at max_adapters).")
    vllm_max_lora_rank: int = Field(
        default=64, ge=1, alias="REFINERY_INFERENCE_VLLM_MAX_LORA_RANK",
        description="vLLM only: the largest LoRA rank it preallocates for; adapters above it are refused.")
    vllm_gpu_memory_utilization: float = Field(
        default=0.85, gt=0, le=1, alias="REFINERY_INFERENCE_VLLM_GPU_MEMORY_UTILIZATION",
        description="vLLM only: the share of GPU memory it may take (weights plus KV cache).")
    vllm_max_model_len: int | None = Field(
        default=None, ge=1, alias="REFINERY_INFERENCE_VLLM_MAX_MODEL_LEN",
        description="vLLM only: context length; default the model's own.")
