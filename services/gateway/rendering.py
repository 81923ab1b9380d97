"""JSON between the REST surface and the backends: the caller's input encoded for a backend, and
backend answers rendered as responses (objects, pre-serialised bytes, JSONL streams)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
import orjson
from fastapi.responses import Response, StreamingResponse

from gateway.error_mapping import Backend, api_error
from gateway.errors import ApiError


def iso(ms: float) -> str:
    """Milliseconds since the epoch as the API writes times: ISO 8601, milliseconds, `Z`."""
    return datetime.fromtimestamp(ms / 1000.0, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def raw_json(data: bytes) -> Response:
    """A backend's JSON bytes, answered as they are."""
    return Response(data, media_type="application/json")


def input_json(value: Any, what: str) -> bytes:
    """JSON for a backend; what orjson cannot write (integers past 64 bits, nesting deeper than 254)
    is the caller's input problem, so a 400 naming it."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        raise ApiError(400, "BAD_REQUEST", "Input validation failed", [
            f"{what} cannot be stored: {exc} (integers must fit in 64 bits, nesting at most 254 levels)"]) from exc


async def jsonl_stream(call: Any, backend: Backend) -> StreamingResponse:
    """A server-streaming call of JSONL chunks, as `application/x-ndjson`. The first chunk is read
    before answering, so a bad request is a 4xx and not a broken stream."""
    try:
        first = await call.read()
    except grpc.aio.AioRpcError as exc:
        raise api_error(exc, backend) from exc

    async def chunks() -> AsyncIterator[bytes]:
        try:
            if first is grpc.aio.EOF:
                return
            yield first.jsonl
            while (chunk := await call.read()) is not grpc.aio.EOF:
                yield chunk.jsonl
        finally:
            call.cancel()  # the client went away mid-stream: the service stops producing and frees its worker

    return StreamingResponse(chunks(), media_type="application/x-ndjson")
