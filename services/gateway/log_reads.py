"""What every read of request logs shares (log search and export, dataset import from logs): the
REST filter shape, its gRPC form, and the positions the read must wait for."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field
from refinery.rpc import logs_pb2

from gateway.error_mapping import api_error
from gateway.errors import ApiError
from gateway.reads import BusUnavailable

FilterValue = str | float | int | bool | None


class LogFilterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str = Field(
        min_length=1,
        description="model, completionId, statusCode, metadata.<key>, tags.<key>, text, from or to; "
                    "request and response take contains / notContains",
    )
    equals: FilterValue = None
    contains: str | None = Field(default=None, min_length=1,
                                 description="Case-insensitive substring (request, response, text, model, "
                                             "completionId, metadata.<key>)")
    notContains: str | None = Field(default=None, min_length=1, description="The substring is absent")
    anyOf: list[str] | None = Field(default=None, min_length=1, max_length=1000,
                                    description="One of these values (id, model, completionId)")


# The wire name of each operator besides `equals`, and its gRPC `op`.
OPS = {"contains": "contains", "notContains": "not_contains", "anyOf": "any_of"}


def filter_out(f: logs_pb2.Filter) -> dict[str, Any]:
    """A filter in its wire form again (`to_filters` read back), as a standing rule shows it."""
    wire = next((name for name, op in OPS.items() if op == f.op), "equals")
    return {"field": f.field, wire: orjson.loads(f.value) if f.op == "any_of" else f.value}


def to_filters(filters: list[LogFilterIn]) -> list[logs_pb2.Filter]:
    out = []
    for f in filters:
        given = [name for name in ("equals", *OPS) if getattr(f, name) is not None]
        if len(given) > 1:
            raise ApiError(400, "BAD_REQUEST", "Input validation failed", [
                f"filter {f.field!r}: give one of equals, contains, notContains, anyOf (got {', '.join(given)})"])
        if given and given[0] in OPS:
            value = getattr(f, given[0])
            out.append(logs_pb2.Filter(field=f.field, op=OPS[given[0]], value_type="string",
                                       value=orjson.dumps(value).decode() if given[0] == "anyOf" else value))
            continue
        value = f.equals
        if isinstance(value, bool):
            out.append(logs_pb2.Filter(field=f.field, value="true" if value else "false", value_type="bool"))
        elif isinstance(value, (int, float)):
            text = str(int(value)) if float(value).is_integer() else str(value)
            out.append(logs_pb2.Filter(field=f.field, value=text, value_type="number"))
        elif value is None:
            raise ApiError(400, "BAD_REQUEST", "Input validation failed",
                           [f"filter {f.field!r} needs `equals`, `contains`, `notContains` or `anyOf`"])
        else:
            out.append(logs_pb2.Filter(field=f.field, value=value, value_type="string"))
    return out


async def bound_positions(request: Request, project_id: str) -> list[logs_pb2.Position]:
    """Every write of the project acknowledged before this read (see gateway.reads); a 503 when
    they cannot be seen yet."""
    deps = request.app.state.deps
    try:
        return await deps.reads.bound(project_id, deps.producer, deps.settings.read_wait_s)
    except BusUnavailable as exc:
        raise api_error(exc) from exc
