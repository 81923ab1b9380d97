"""The one mapping from backend and logic errors to HTTP errors, shared by every router."""

from __future__ import annotations

import grpc
import pytest
from gateway.error_mapping import DATASETS, LOG_STORE, MODEL_REGISTRY, InvalidInput, api_error, call
from gateway.errors import ApiError
from gateway.reads import BusUnavailable


def _rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


@pytest.mark.parametrize(("code", "status", "error_code"), [
    (grpc.StatusCode.NOT_FOUND, 404, "NOT_FOUND"),
    (grpc.StatusCode.INVALID_ARGUMENT, 400, "BAD_REQUEST"),
    (grpc.StatusCode.FAILED_PRECONDITION, 400, "BAD_REQUEST"),
    (grpc.StatusCode.ALREADY_EXISTS, 409, "CONFLICT"),
])
def test_refusals_carry_the_backends_message_as_message_and_issue(code, status, error_code) -> None:
    err = api_error(_rpc_error(code, "dataset 'x' not found"), DATASETS)
    assert (err.status, err.code, err.message, err.issues) == (status, error_code, "dataset 'x' not found",
                                                              ["dataset 'x' not found"])


def test_anything_else_is_a_503_worded_by_the_backend() -> None:
    down = _rpc_error(grpc.StatusCode.UNAVAILABLE, "connection refused")
    assert api_error(down, LOG_STORE).message == \
        "The log store is not available (UNAVAILABLE: connection refused); retry shortly"
    assert api_error(down, DATASETS).message == \
        "The dataset service is not available (UNAVAILABLE: connection refused); retry"
    assert api_error(down, MODEL_REGISTRY).message == \
        "The model registry is not available (UNAVAILABLE: connection refused); retry"
    late = api_error(_rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, ""), DATASETS)
    assert (late.status, late.code, late.issues) == (503, "SERVICE_UNAVAILABLE", [])
    assert "DEADLINE_EXCEEDED: DEADLINE_EXCEEDED" in late.message


def test_typed_logic_errors() -> None:
    bus = api_error(BusUnavailable("proxied calls are spooled locally until the bus is back"))
    assert (bus.status, bus.code, bus.message) == (503, "SERVICE_UNAVAILABLE",
                                                   "proxied calls are spooled locally until the bus is back")
    bad = api_error(InvalidInput("slug must be 1-64 letters"))
    assert (bad.status, bad.code, bad.message, bad.issues) == (400, "BAD_REQUEST", "slug must be 1-64 letters",
                                                              ["slug must be 1-64 letters"])


async def test_call_translates_what_the_stub_raises() -> None:
    class Stub:
        async def Get(self, message, **kw):
            assert kw == {"timeout": 60}
            raise _rpc_error(grpc.StatusCode.NOT_FOUND, "model 'm' not found")

        async def Ok(self, message, **kw):
            return message

    assert await call(Stub(), "Ok", "msg", DATASETS) == "msg"
    with pytest.raises(ApiError) as err:
        await call(Stub(), "Get", "msg", MODEL_REGISTRY)
    assert (err.value.status, err.value.message) == (404, "model 'm' not found")
