"""The gateway's internal gRPC API: a project's provider settings, for proxy-router."""

from __future__ import annotations

import asyncio
from typing import Any

from refinery.rpc import projects_pb2, projects_pb2_grpc

from gateway.projects import ProjectRegistry


class ProjectsServicer(projects_pb2_grpc.ProjectsServicer):
    def __init__(self, registry: ProjectRegistry) -> None:
        self._registry = registry

    async def GetProviderSettings(self, request: projects_pb2.ProviderSettingsRequest,
                                  context: Any) -> projects_pb2.ProviderSettingsResponse:
        providers = await asyncio.to_thread(self._registry.providers, request.project_id)
        return projects_pb2.ProviderSettingsResponse(providers=[
            projects_pb2.Provider(name=p.provider, base_url=p.base_url, api_key=p.api_key, model_costs=[
                projects_pb2.ModelCost(model=m, input_per_mtok=i, output_per_mtok=o)
                for m, (i, o) in sorted(p.model_costs.items())]) for p in providers
        ])
