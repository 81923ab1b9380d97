"""When the model registry is down, the model routes' 503 names the model registry."""

from __future__ import annotations

import types

import grpc
import pytest
from gateway import models_api
from gateway.errors import ApiError
from refinery.rpc import models_pb2


class _DownRegistry:
    async def ListModels(self, message, **kw):
        raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                   "connection refused")


async def test_a_model_route_names_the_model_registry_when_it_is_down() -> None:
    request = types.SimpleNamespace(app=types.SimpleNamespace(state=types.SimpleNamespace(
        deps=types.SimpleNamespace(models=_DownRegistry()))))
    with pytest.raises(ApiError) as err:
        await models_api._rpc(request, "ListModels", models_pb2.ListModelsRequest(project_id="p1"))  # type: ignore[arg-type]
    assert (err.value.status, err.value.code) == (503, "SERVICE_UNAVAILABLE")
    assert err.value.message == "The model registry is not available (UNAVAILABLE: connection refused); retry"
