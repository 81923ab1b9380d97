"""log-ingest: request logs from the bus into ClickHouse, and the queries over them."""
