"""How an entry sits in the `entries` table, and the shapes it is read back in.

The row keeps split and metadata in columns of their own (so lists filter on them in SQL) and
the rest of the entry as one JSON body; these functions are the only place that knows it.
"""

from __future__ import annotations

from typing import Any

import orjson
from refinery.wire.entries import Entry, entry_to_dict, parse_entry


def entry_body(entry: Entry) -> bytes:
    """The `body` column: the entry without split and metadata, as JSON."""
    d = entry_to_dict(entry)
    d.pop("split", None)
    d.pop("metadata", None)
    return orjson.dumps(d)


def row_to_entry(row: Any) -> dict[str, Any]:
    """An entry as the API shows it: the export fields plus id, split, source and times."""
    body = orjson.loads(row.body)
    out: dict[str, Any] = {"object": "dataset.entry", "id": row.id, "dataset_id": row.dataset_id}
    out.update(body)
    out["split"] = row.split
    out["metadata"] = dict(row.meta or {})
    out["source"] = row.source
    out["created_at"] = row.created_at
    out["updated_at"] = row.updated_at
    return out


def row_to_export(row: Any) -> dict[str, Any]:
    """One line of the documented dataset export (messages, tools, tool_choice, split, ...)."""
    out = orjson.loads(row.body)
    out["split"] = row.split
    if row.meta:
        out["metadata"] = dict(row.meta)
    return out


def entry_of_row(row: Any) -> Entry:
    return parse_entry(row_to_export(row))
