"""gateway's settings."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from refinery.config import ServiceSettings
from refinery.secrets_box import check_key


class GatewaySettings(ServiceSettings):
    host: str = "127.0.0.1"
    port: int = 8000
    grpc_port: int = Field(default=50050, description="Internal gRPC (provider settings for proxy-router).")
    log_ingest_grpc: str = "127.0.0.1:50051"
    proxy_router_url: str | None = Field(default=None, description="proxy-router HTTP base, e.g. http://127.0.0.1:8101")
    proxy_router_grpc: str | None = None
    registry_grpc: str | None = Field(default=None, description="model-registry gRPC; model routes need it")
    trainer_grpc: str | None = Field(default=None, description="trainer gRPC health, for /health")
    inference_grpc: str | None = Field(default=None, description="inference gRPC health, for /health")
    dataset_grpc: str | None = Field(default=None, description="dataset service gRPC; dataset routes need it")
    criteria_grpc: str | None = Field(default=None, description="criteria-judge gRPC; criteria routes need it")
    eval_grpc: str | None = Field(default=None, description="eval gRPC; eval routes need it")
    retention_url: str | None = Field(
        default=None, description="The embedded stack's retention job (HTTP), shown by GET /admin/v1/pipeline")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in the data dir")
    admin_token: SecretStr | None = Field(
        default=None, description="Token of the admin API (at least 16 characters); default made once in "
                                  "<data_dir>/gateway/admin-token")
    encryption_key: SecretStr | None = Field(
        default=None, description="Fernet key (44 characters of url-safe base64) that encrypts provider keys at "
                                  "rest; default made once in <data_dir>/gateway/secret.key. Keep it: with another "
                                  "key the stored provider keys cannot be read.")
    init_api_key: str | None = None
    init_openai_base_url: str | None = None
    init_openai_api_key: str | None = None
    init_anthropic_base_url: str | None = None
    init_anthropic_api_key: str | None = None
    init_gemini_base_url: str | None = None
    init_gemini_api_key: str | None = None
    max_body_bytes: int = 10 * 1024 * 1024
    max_upload_bytes: int = Field(default=5 * 1024**3, description="Largest JSONL upload (streamed, not buffered)")
    read_wait_s: float = 5.0

    @field_validator("admin_token", "encryption_key", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        """An empty variable (an unfilled env file or Secret entry) means not set: the data dir's is used."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("admin_token")
    @classmethod
    def _admin_token_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < 16:
            raise ValueError("REFINERY_ADMIN_TOKEN must be at least 16 characters (e.g. `openssl rand -hex 24`)")
        return value

    @field_validator("encryption_key")
    @classmethod
    def _encryption_key_is_fernet(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        try:
            return SecretStr(check_key(value.get_secret_value()))
        except ValueError as exc:
            raise ValueError(f"REFINERY_ENCRYPTION_KEY is not valid: {exc}") from None

    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.service_dir('gateway') / 'gateway.db'}"
