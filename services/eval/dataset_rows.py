"""An eval's rows: the dataset's TEST entries read through the dataset service's gRPC API, page by page.

Each entry becomes a row: its id, its input (the messages before the last, and `tools`,
`tool_choice`, `response_format` where present) and its dataset output (the last, assistant,
message). The rows are a snapshot: the eval keeps them as they were when it was created.
"""

from __future__ import annotations

from typing import Any

import grpc
import orjson
from refinery.events.evals import EvalRow
from refinery.rpc import datasets_pb2

from eval.definitions import Invalid, Unavailable, dataset_not_found

PAGE = 1000
INPUT_KEYS = ("tools", "tool_choice", "response_format")


def row_of(entry: dict[str, Any]) -> EvalRow:
    messages = list(entry.get("messages") or [])
    last = messages[-1] if messages and isinstance(messages[-1], dict) else None
    output = last if last is not None and last.get("role") == "assistant" else None
    row_input: dict[str, Any] = {"messages": messages[:-1] if output is not None else messages}
    for key in INPUT_KEYS:
        if entry.get(key) is not None:
            row_input[key] = entry[key]
    return EvalRow(row_id=str(entry["id"]), input=row_input, dataset_output=output or {})


class DatasetRows:
    def __init__(self, datasets: Any, timeout_s: float = 60.0) -> None:
        self._datasets = datasets  # a datasets_pb2_grpc.DatasetsStub
        self._timeout_s = timeout_s

    async def _page(self, project_id: str, dataset_id: str, offset: int, limit: int
                    ) -> tuple[list[dict[str, Any]], int]:
        request = datasets_pb2.ListEntriesRequest(project_id=project_id, dataset_id=dataset_id, split="TEST",
                                                  limit=limit, offset=offset)
        try:
            resp = await self._datasets.ListEntries(request, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise dataset_not_found(dataset_id) from None
            raise Unavailable(f"dataset service unavailable: {exc.code().name}") from None
        entries = orjson.loads(resp.entries_json)
        if not isinstance(entries, list):
            raise Unavailable("dataset service answered entries that are not a JSON array")
        return entries, int(resp.total)

    async def count(self, project_id: str, dataset_id: str, max_rows: int) -> int:
        """How many TEST entries the dataset has: NotFound for an unknown dataset, Invalid when there are
        none or more than `max_rows`."""
        _, total = await self._page(project_id, dataset_id, 0, 1)
        if total == 0:
            raise Invalid(f"dataset {dataset_id} has no TEST entries: an eval runs on the TEST split")
        if total > max_rows:
            raise Invalid(f"dataset {dataset_id} has {total} TEST entries; an eval covers at most {max_rows}")
        return total

    async def read(self, project_id: str, dataset_id: str, max_rows: int) -> list[EvalRow]:
        """Every TEST entry as a row, in the dataset's order (at most `max_rows`)."""
        rows: list[EvalRow] = []
        offset = 0
        while len(rows) < max_rows:
            limit = min(PAGE, max_rows - len(rows))
            entries, _ = await self._page(project_id, dataset_id, offset, limit)
            offset += len(entries)
            rows.extend(row_of(e) for e in entries if isinstance(e, dict) and e.get("id") is not None)
            if len(entries) < limit:
                break
        if not rows:
            raise Invalid(f"dataset {dataset_id} has no TEST entries: an eval runs on the TEST split")
        return rows
