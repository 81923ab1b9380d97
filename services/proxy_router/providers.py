"""Provider settings of a project, fetched from the gateway and cached briefly in memory."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from refinery import internal_auth
from refinery.grpc_server import client_channel
from refinery.rpc import projects_pb2, projects_pb2_grpc


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    base_url: str
    api_key: str
    headers: tuple[tuple[str, str], ...] = ()  # extra request headers (the adapter of a fine-tuned model)
    # The project's prices for this provider's models: model → ($/Mtok in, out); built once per settings fetch.
    prices: Mapping[str, tuple[float, float]] = field(default_factory=dict)


class ProviderCache:
    def __init__(self, gateway_grpc: str, ttl_s: float) -> None:
        self._stub = projects_pb2_grpc.ProjectsStub(client_channel(gateway_grpc))
        self._ttl = ttl_s
        self._cache: dict[str, tuple[float, dict[str, Upstream]]] = {}

    async def get(self, project_id: str) -> dict[str, Upstream]:
        hit = self._cache.get(project_id)
        now = time.monotonic()
        if hit and hit[0] > now:
            return hit[1]
        resp = await self._stub.GetProviderSettings(
            projects_pb2.ProviderSettingsRequest(project_id=project_id), timeout=5
        )
        providers = {p.name: Upstream(p.name, p.base_url.rstrip("/"), p.api_key, prices={
            c.model: (c.input_per_mtok, c.output_per_mtok) for c in p.model_costs}) for p in resp.providers}
        self._cache[project_id] = (now + self._ttl, providers)
        return providers


class ModelResolver:
    """`openpipe:<slug>` → the deployed model (from model-registry), cached briefly like providers."""

    def __init__(self, registry_grpc: str | None, inference_url: str | None, ttl_s: float) -> None:
        from refinery.rpc import models_pb2_grpc

        self._stub = models_pb2_grpc.ModelRegistryStub(client_channel(registry_grpc)) if registry_grpc else None
        self._inference = inference_url.rstrip("/") + "/v1" if inference_url else None
        self._ttl = ttl_s
        self._cache: dict[tuple[str, str], tuple[float, Any]] = {}
        self._bases: tuple[float, frozenset[str]] | None = None  # (until, base model ids) from inference

    async def base(self, session: Any, name: str) -> Upstream | None:
        """The inference service as the upstream of `name` when it is the base model served there
        (`openpipe:<base model id>`, e.g. `openpipe:HuggingFaceTB/SmolLM2-135M-Instruct`): the model a
        fine-tune started from, called without an adapter. None for any other name."""
        if self._inference is None:
            return None
        now = time.monotonic()
        if self._bases is None or self._bases[0] <= now:
            async with session.get(f"{self._inference}/models", headers=internal_auth.headers()) as resp:
                resp.raise_for_status()
                listed = await resp.json()
            ids = frozenset(str(m.get("id")) for m in listed.get("data", []) if isinstance(m, dict))
            self._bases = (now + self._ttl, ids)
        if name not in self._bases[1]:
            return None
        return Upstream("openpipe", self._inference, "", tuple(internal_auth.headers().items()))

    async def resolve(self, project_id: str, slug: str) -> tuple[Upstream | None, str | None]:
        """The upstream serving it, or (None, why not)."""
        from refinery.rpc import models_pb2

        if self._stub is None or self._inference is None:
            return None, "this installation serves no fine-tuned models"
        now = time.monotonic()
        hit = self._cache.get((project_id, slug))
        if hit and hit[0] > now:
            res = hit[1]
        else:
            res = await self._stub.Resolve(models_pb2.ModelRef(project_id=project_id, slug=slug), timeout=5)
            # Only a deployed model is cached: one in training must show DEPLOYED as soon as it is.
            if res.found and res.status == "DEPLOYED":
                self._cache[(project_id, slug)] = (now + self._ttl, res)
        if not res.found:
            return None, None
        if res.status != "DEPLOYED":
            return None, f"is not deployed yet (status {res.status})"
        headers = [("x-refinery-adapter", res.model_id), *internal_auth.headers().items()]
        if res.has_default_temperature:
            headers.append(("x-refinery-default-temperature", repr(res.default_temperature)))
        return Upstream("openpipe", self._inference, "", tuple(headers)), None
