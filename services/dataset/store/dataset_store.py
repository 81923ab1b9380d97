"""The dataset service's state: one event store plus SQL projections, one transaction per change.

Each dataset is an aggregate with consecutive event versions. Every write appends its events,
updates the projections and fills the outbox in one transaction (SQLite embedded, PostgreSQL
in production), so a crash either keeps a change whole or not at all. Writers are serialised
in-process: one dataset service owns this database.

The methods live in one part per aggregate or concern (`store.entries.add(...)`,
`store.uploads.progress(...)`); this class is the one `EventSourcedStore` they all write
through, so the service kernel wires a single engine, outbox and offset store.
"""

from __future__ import annotations

from refinery.stores.eventstore import EventSourcedStore

from dataset.store.datasets import Datasets
from dataset.store.entries import Entries
from dataset.store.relabel_jobs import RelabelJobs
from dataset.store.rules import ImportRules, PruningRules
from dataset.store.snapshots import Snapshots
from dataset.store.tables import projections
from dataset.store.uploads import Uploads


class DatasetStore(EventSourcedStore):
    """`engine`, `on_change`, `load_offsets`, `save_offsets` and `close` come from the base; a
    consumer that stores offsets with the entries they produced calls `eventstore.save_offsets(conn, ...)`
    inside that write (`entries.add(..., also=...)`)."""

    def __init__(self, db_url: str) -> None:
        super().__init__(db_url, projections, wal=True)  # WAL: readers never wait for the writer
        self.datasets = Datasets(self)
        self.entries = Entries(self)
        self.pruning_rules = PruningRules(self)
        self.import_rules = ImportRules(self)
        self.uploads = Uploads(self)
        self.relabel_jobs = RelabelJobs(self, self.entries)
        self.snapshots = Snapshots(self)
