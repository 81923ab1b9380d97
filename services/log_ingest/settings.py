"""log-ingest's settings."""

from __future__ import annotations

from pydantic import Field
from refinery.config import ServiceSettings


class LogIngestSettings(ServiceSettings):
    grpc_host: str = "127.0.0.1"
    grpc_port: int = Field(default=50051, alias="REFINERY_LOG_INGEST_GRPC_PORT")
    clickhouse_dsn: str | None = Field(
        default=None, description="ClickHouse DSN; default chdb:///<data_dir>/log-ingest/chdb"
    )
    max_batch: int = 20000
    # Tansu answers an idle fetch only when this elapses, and returns nothing if reading a backlog
    # takes longer: 100 ms keeps tail latency near 20 ms and still lets a backlog drain.
    fetch_wait_ms: int = 100
    read_wait_s: float = Field(default=5.0, description="Longest a bound read waits before 503.")

    def dsn(self) -> str:
        if self.clickhouse_dsn:
            return self.clickhouse_dsn
        return f"chdb://{self.service_dir('log-ingest') / 'chdb'}"
