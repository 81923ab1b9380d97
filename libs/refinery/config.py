"""Typed settings shared by every service.

Each service declares ONE settings class deriving from `ServiceSettings`, read once at
start-up from `REFINERY_*` environment variables and validated there, so a bad value fails
the process before it serves anything.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REQUEST_LOGS_TOPIC = "refinery.request-logs"
PROJECTS_TOPIC = "refinery.projects"
DATASETS_TOPIC = "refinery.datasets"
MODELS_TOPIC = "refinery.models"
DEAD_LETTERS_TOPIC = "refinery.dead-letters"
CRITERIA_TOPIC = "refinery.criteria"
EVALS_TOPIC = "refinery.evals"


class ServiceSettings(BaseSettings):
    """What every service needs: where its data lives and where the bus is."""

    # Values may be secrets (tokens, keys, database URLs with passwords): errors name the setting, never echo it.
    model_config = SettingsConfigDict(env_prefix="REFINERY_", extra="ignore", hide_input_in_errors=True)

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
    internal_token: SecretStr | None = Field(
        default=None,
        description="Shared token of the internal gRPC and HTTP calls between services (the same value on every "
                    "service; at least 16 characters); default made once in <data_dir>/internal-token, which only "
                    "services sharing that data dir know. Only health answers without it.")
    internal_token_required: bool = Field(
        default=False,
        description="Refuse to start without REFINERY_INTERNAL_TOKEN instead of using the data dir's (set it in "
                    "deployments where the services have disks of their own).")

    @field_validator("internal_token", mode="before")
    @classmethod
    def _blank_token_is_unset(cls, value: object) -> object:
        """An empty variable (`REFINERY_INTERNAL_TOKEN=` from an unfilled env file) means not set."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("internal_token")
    @classmethod
    def _token_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("REFINERY_INTERNAL_TOKEN must be at least 16 characters (e.g. `openssl rand -hex 32`)")
        return value

    def service_token(self) -> str:
        """The internal token this service uses (see refinery.internal_auth.resolve)."""
        from refinery.internal_auth import resolve

        configured = self.internal_token.get_secret_value() if self.internal_token else None
        return resolve(configured, self.data_dir, required=self.internal_token_required)

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
