"""The dataset service's store, one module per aggregate or concern.

- `tables`: the projection tables (the on-disk schema), `DatasetRow`, `now_ms`.
- `part`: `StorePart`, what every part shares (the dataset lookup, the append that moves
  `updated_at`, the write transactions).
- `datasets`, `entries` (with `entry_rows`, the entries table's row format), `rules` (pruning
  and import rules), `uploads`, `relabel_jobs`, `snapshots`: the parts.
- `dataset_store`: `DatasetStore`, the one event store that holds them all.
"""

from dataset.store.dataset_store import DatasetStore
from dataset.store.entries import AddResult, NewEntry
from dataset.store.entry_rows import entry_of_row, row_to_entry, row_to_export
from dataset.store.errors import Invalid, NotFound
from dataset.store.tables import DatasetRow

__all__ = [
    "AddResult",
    "DatasetRow",
    "DatasetStore",
    "Invalid",
    "NewEntry",
    "NotFound",
    "entry_of_row",
    "row_to_entry",
    "row_to_export",
]
