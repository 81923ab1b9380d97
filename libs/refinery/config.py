"""Typed settings shared by every service.

Each service declares ONE settings class deriving from `ServiceSettings`, read once at
start-up from `REFINERY_*` environment variables and validated there, so a bad value fails
the process before it serves anything.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REQUEST_LOGS_TOPIC = "refinery.request-logs"
PROJECTS_TOPIC = "refinery.projects"
DATASETS_TOPIC = "refinery.datasets"
MODELS_TOPIC = "refinery.models"
DEAD_LETTERS_TOPIC = "refinery.dead-letters"


class ServiceSettings(BaseSettings):
    """What every service needs: where its data lives and where the bus is."""

    model_config = SettingsConfigDict(env_prefix="REFINERY_", extra="ignore")

    data_dir: Path = Field(default=Path(".refinery"), description="Root of all embedded state.")
    bus_bootstrap: str = Field(default="127.0.0.1:9092", description="Kafka bootstrap servers.")
    request_logs_topic: str = REQUEST_LOGS_TOPIC
    projects_topic: str = PROJECTS_TOPIC
    datasets_topic: str = DATASETS_TOPIC
    models_topic: str = MODELS_TOPIC
    dead_letters_topic: str = DEAD_LETTERS_TOPIC
    topic_partitions: int = Field(default=4, ge=1)
    bus_max_event_bytes: int = Field(
        default=15 * 1024 * 1024, ge=64 * 1024,
        description="Largest event a service writes; larger writes are refused (413) before they are "
                    "acknowledged. Keep it under the broker's message.max.bytes (Kafka's default is 1 MiB).")
    log_level: str = "WARNING"
    model_cache_dir: Path | None = Field(
        default=None, description="Base models converted or downloaded once; default <data_dir>/models")

    def models_dir(self) -> Path:
        path = (self.model_cache_dir or self.data_dir / "models").resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path

    def service_dir(self, name: str) -> Path:
        path = (self.data_dir / name).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path


class ObjectStoreSettings(ServiceSettings):
    """The object store (SeaweedFS embedded, MinIO or any S3 in production) of the services that keep blobs."""

    s3_endpoint: str = "127.0.0.1:9000"
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_secure: bool = False
