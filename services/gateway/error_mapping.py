"""The one translation of what the routers' backends and logic raise into HTTP errors.

Logic and backends speak in gRPC status codes and typed errors; only the routers speak HTTP, and
they all translate through `api_error` here, so a status means the same on every route:

| raised | HTTP |
|---|---|
| NOT_FOUND | 404 NOT_FOUND |
| INVALID_ARGUMENT, FAILED_PRECONDITION | 400 BAD_REQUEST |
| ALREADY_EXISTS | 409 CONFLICT |
| RESOURCE_EXHAUSTED (too many heavy requests of one project at once) | 429 TOO_MANY_REQUESTS |
| DEADLINE_EXCEEDED of a backend whose timeouts are its answer (criteria-judge's judges) | 504 GATEWAY_TIMEOUT |
| any other status (UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, ...) | 503 SERVICE_UNAVAILABLE, worded by the backend |
| `BusUnavailable` (earlier writes cannot be seen yet) | 503 SERVICE_UNAVAILABLE |
| `InvalidInput` (a body the REST shape refuses; the message names the field) | 400 BAD_REQUEST |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from gateway.errors import ApiError
from gateway.reads import BusUnavailable


class InvalidInput(ValueError):
    """A request body the REST shape refuses; the message names the field."""


@dataclass(frozen=True)
class Backend:
    """A service the routers call, as its 503 names it: `unavailable` takes `{code}` and `{details}`.

    `times_out`: the backend's DEADLINE_EXCEEDED is its own answer (work it waited on for too long,
    with a message saying what), so it is a 504 with that message rather than "not available"."""

    unavailable: str
    times_out: bool = False


LOG_STORE = Backend("The log store is not available ({code}: {details}); retry shortly")
DATASETS = Backend("The dataset service is not available ({code}: {details}); retry")
MODEL_REGISTRY = Backend("The model registry is not available ({code}: {details}); retry")
CRITERIA = Backend("The criteria service is not available ({code}: {details}); retry", times_out=True)
EVALS = Backend("The eval service is not available ({code}: {details}); retry")

_STATUS = {
    grpc.StatusCode.NOT_FOUND: (404, "NOT_FOUND"),
    grpc.StatusCode.INVALID_ARGUMENT: (400, "BAD_REQUEST"),
    grpc.StatusCode.FAILED_PRECONDITION: (400, "BAD_REQUEST"),
    grpc.StatusCode.ALREADY_EXISTS: (409, "CONFLICT"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "TOO_MANY_REQUESTS"),
}


def api_error(exc: Exception, backend: Backend | None = None) -> ApiError:
    """The HTTP error for `exc`: a gRPC error of `backend`, or one of the typed errors above."""
    if isinstance(exc, grpc.aio.AioRpcError):
        assert backend is not None, "a gRPC error needs the backend that raised it"
        details = exc.details() or exc.code().name
        status, code = _STATUS.get(exc.code(), (503, "SERVICE_UNAVAILABLE"))
        if backend.times_out and exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return ApiError(504, "GATEWAY_TIMEOUT", details, [details])
        if status == 503:
            return ApiError(503, code, backend.unavailable.format(code=exc.code().name, details=details))
        return ApiError(status, code, details, [details])
    if isinstance(exc, BusUnavailable):
        return ApiError(503, "SERVICE_UNAVAILABLE", str(exc))
    if isinstance(exc, InvalidInput):
        return ApiError(400, "BAD_REQUEST", str(exc), [str(exc)])
    raise TypeError(f"no HTTP error for {type(exc).__name__}") from exc


async def call(stub: Any, method: str, message: Any, backend: Backend, deadline_s: float = 60) -> Any:
    """A unary call to `backend`, its gRPC errors translated."""
    try:
        return await getattr(stub, method)(message, timeout=deadline_s)
    except grpc.aio.AioRpcError as exc:
        raise api_error(exc, backend) from exc
