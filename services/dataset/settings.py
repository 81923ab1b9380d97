"""The dataset service's settings."""

from __future__ import annotations

from pydantic import Field
from refinery.config import ObjectStoreSettings


class DatasetSettings(ObjectStoreSettings):
    grpc_host: str = "127.0.0.1"
    grpc_port: int = Field(default=50061, alias="REFINERY_DATASET_GRPC_PORT")
    database_url: str | None = Field(
        default=None, alias="REFINERY_DATASET_DATABASE_URL",
        description="SQLAlchemy URL; default SQLite in <data_dir>/dataset",
    )
    log_ingest_grpc: str = "127.0.0.1:50051"
    proxy_router_url: str | None = Field(default=None, description="proxy-router HTTP base, for relabeling")
    s3_bucket: str = "refinery-datasets"
    upload_batch_lines: int = Field(default=2000, ge=1)
    relabel_timeout_s: float = 120.0
    # Standing import rules follow the request-log topic. With the embedded broker every fetch
    # that finds new records lists the partition's objects, competing with the writes a report's
    # acknowledgement waits for; a longer wait means fewer such fetches, and a rule still picks
    # up a new log well within a second.
    rules_fetch_wait_ms: int = Field(default=250, ge=1, le=5000)
    # Threads per kind of work, each pool its own, so that no kind can take the threads of another.
    store_workers: int = Field(default=4, ge=1, le=64, description="Threads for store calls of the gRPC API.")
    snapshot_workers: int = Field(default=1, ge=1, le=16, description="Snapshots frozen at once.")
    stream_workers: int = Field(
        default=8, ge=1, le=256, description="Exports and snapshot reads streamed at once; more wait for a thread.",
    )
    # A JSONL line longer than this is reported as that line's error and skipped (its bytes are
    # never held), and the rest of the file is read.
    upload_max_line_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="Longest line of an uploaded JSONL file, in bytes.",
    )

    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.service_dir('dataset') / 'dataset.db'}"
