"""inference's settings."""

from __future__ import annotations

from pydantic import Field
from refinery.config import ServiceSettings


class InferenceSettings(ServiceSettings):
    host: str = "127.0.0.1"
    port: int = Field(default=8201, alias="REFINERY_INFERENCE_PORT")
    grpc_host: str = "127.0.0.1"
    grpc_port: int = Field(default=50081, alias="REFINERY_INFERENCE_GRPC_PORT")
    base_model: str = Field(default="HuggingFaceTB/SmolLM2-135M-Instruct", alias="REFINERY_INFERENCE_BASE_MODEL")
    registry_grpc: str | None = None
    s3_endpoint: str = "127.0.0.1:9000"
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_secure: bool = False
    s3_bucket: str = "refinery-models"
    max_adapters: int = 32
