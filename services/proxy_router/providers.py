"""Provider settings of a project, fetched from the gateway and cached briefly in memory."""

from __future__ import annotations

import time
from dataclasses import dataclass

from refinery.grpc_server import client_channel
from refinery.rpc import projects_pb2, projects_pb2_grpc


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    base_url: str
    api_key: str


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
        providers = {p.name: Upstream(p.name, p.base_url.rstrip("/"), p.api_key) for p in resp.providers}
        self._cache[project_id] = (now + self._ttl, providers)
        return providers
