"""A backend that refuses heavy work because too much of it runs at once answers 429, with its words."""

from __future__ import annotations

import grpc
from gateway.error_mapping import LOG_STORE, api_error


def test_resource_exhausted_is_429_carrying_the_backends_reason() -> None:
    reason = ("too many heavy log queries (search, export, metadata update) running for this project at once "
              "(at most 2); retry when one has finished")
    err = api_error(grpc.aio.AioRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.aio.Metadata(),
                                         grpc.aio.Metadata(), reason), LOG_STORE)
    assert (err.status, err.code, err.message, err.issues) == (429, "TOO_MANY_REQUESTS", reason, [reason])
