"""What every read of request logs shares (log search and export, dataset import from logs): the
REST filter shape, its gRPC form, and the positions the read must wait for."""

from __future__ import annotations

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


def to_filters(filters: list[LogFilterIn]) -> list[logs_pb2.Filter]:
    out = []
    for f in filters:
        given = [name for name in ("equals", "contains", "notContains", "anyOf") if getattr(f, name) is not None]
        if len(given) > 1:
            raise ApiError(400, "BAD_REQUEST", "Input validation failed", [
                f"filter {f.field!r}: give one of equals, contains, notContains, anyOf (got {', '.join(given)})"])
        if f.anyOf is not None:
            out.append(logs_pb2.Filter(field=f.field, value=orjson.dumps(f.anyOf).decode(), value_type="string",
                                       op="any_of"))
            continue
        if f.contains is not None:
            out.append(logs_pb2.Filter(field=f.field, value=f.contains, value_type="string", op="contains"))
            continue
        if f.notContains is not None:
            out.append(logs_pb2.Filter(field=f.field, value=f.notContains, value_type="string", op="not_contains"))
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
