"""The project's fine-tuned models as model-registry knows them: which `openpipe:<slug>` an eval may
run (it exists in the project, is DEPLOYED and is a chat model, not a reward model), and which model a
`model.deployed` event is about (its stream is keyed by the model id, so the slug and dataset come
from the registry)."""

from __future__ import annotations

from typing import Any

import grpc
import orjson
from refinery.rpc import models_pb2

from eval.definitions import Invalid, Unavailable, model_not_found

REWARD_KIND = "openpipeReward"


def is_reward_model(model: models_pb2.Model) -> bool:
    try:
        config = orjson.loads(model.training_config_json or b"{}")
    except orjson.JSONDecodeError:
        return False
    return isinstance(config, dict) and config.get("provider") == REWARD_KIND


class Registry:
    def __init__(self, stub: Any, timeout_s: float = 10.0) -> None:
        self._stub = stub  # a models_pb2_grpc.ModelRegistryStub
        self._timeout_s = timeout_s

    async def check_chat_model(self, project_id: str, slug: str) -> None:
        """NotFound ("Model <slug> not found") unless the project has it; Invalid unless it is a
        DEPLOYED chat model; Unavailable when the registry does not answer."""
        try:
            model = await self._stub.GetModel(models_pb2.ModelRef(project_id=project_id, slug=slug),
                                              timeout=self._timeout_s)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise model_not_found(slug) from None
            raise Unavailable(f"model-registry unavailable: {exc.code().name}") from None
        if is_reward_model(model):
            raise Invalid(f"model openpipe:{slug} is a reward model: it scores outputs but cannot generate them")
        if model.status != "DEPLOYED":
            raise Invalid(f"model openpipe:{slug} is not deployed yet (status {model.status})")

    async def by_id(self, project_id: str, model_id: str) -> models_pb2.Model | None:
        """The project's model with this id, None when there is none (any more); raises Unavailable
        when the registry does not answer."""
        try:
            resp = await self._stub.ListModels(models_pb2.ListModelsRequest(project_id=project_id),
                                               timeout=self._timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise Unavailable(f"model-registry unavailable: {exc.code().name}") from None
        return next((m for m in resp.models if m.id == model_id), None)
