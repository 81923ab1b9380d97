"""log-ingest's thread pools that other modules import by name (see `refinery.runtime.executors`).

Storing batches runs on INGEST, a pool of its own: ingestion is one writer in order, so one
thread, and no read, export or metadata update can take it.
"""

from __future__ import annotations

from refinery.runtime.executors import Purpose

INGEST = Purpose("log-ingest.ingest", workers=1)
