"""trainer's settings."""

from __future__ import annotations

from pydantic import Field
from refinery.config import ObjectStoreSettings


class TrainerSettings(ObjectStoreSettings):
    database_url: str | None = Field(default=None, alias="REFINERY_TRAINER_DATABASE_URL")
    s3_bucket: str = "refinery-models"
    datasets_bucket: str = "refinery-datasets"
    max_attempts: int = Field(
        default=3, ge=1, description="Attempts of a job that crashes (in any phase) before it fails with the reason")
    grpc_host: str = "127.0.0.1"
    health_port: int = Field(default=0, alias="REFINERY_TRAINER_GRPC_PORT", description="gRPC health only")

    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.service_dir('trainer') / 'trainer.db'}"
