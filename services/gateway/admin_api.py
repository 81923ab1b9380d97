"""Admin routes used by the `refinery` CLI: projects and their provider settings."""

from __future__ import annotations

from typing import Any

import aiohttp
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from refinery import internal_auth
from refinery.bus.progress import progress_from_message
from refinery.rpc import logs_pb2

from gateway.auth import admin_only
from gateway.error_mapping import DATASETS, LOG_STORE, call
from gateway.errors import ApiError

router = APIRouter(prefix="/admin/v1", dependencies=[Depends(admin_only)])


class CreateProject(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    apiKey: str | None = Field(default=None, min_length=8, max_length=200)


class ProjectOut(BaseModel):
    id: str
    name: str
    apiKey: str | None = None


class ProviderIn(BaseModel):
    baseUrl: str = Field(min_length=1, pattern=r"^https?://")
    apiKey: str = Field(min_length=1)


@router.post("/projects", response_model=ProjectOut, summary="Create a project and its first API key")
async def create_project(body: CreateProject, request: Request) -> ProjectOut:
    try:
        project, key = request.app.state.deps.projects.create_project(body.name, body.apiKey)
    except ValueError as exc:
        raise ApiError(400, "BAD_REQUEST", str(exc)) from exc
    return ProjectOut(id=project.id, name=project.name, apiKey=key)


@router.get("/projects", response_model=list[ProjectOut], summary="List projects")
async def list_projects(request: Request) -> list[ProjectOut]:
    return [ProjectOut(id=p.id, name=p.name) for p in request.app.state.deps.projects.all_projects()]


@router.put("/projects/{project_id}/providers/{provider}", summary="Set a project's upstream provider")
async def set_provider(project_id: str, provider: str, body: ProviderIn, request: Request) -> dict:
    try:
        request.app.state.deps.projects.set_provider(project_id, provider, body.baseUrl.rstrip("/"), body.apiKey)
    except KeyError as exc:
        raise ApiError(404, "NOT_FOUND", f"project {project_id} not found") from exc
    return {"status": "ok"}


def _follower(p: logs_pb2.FollowerProgress) -> dict:
    partitions = [{"partition": x.partition, "done": x.done, "highWater": x.high_water, "lag": x.lag}
                  for x in progress_from_message(p)]
    known = [x["lag"] for x in partitions if x["lag"] is not None]
    return {"name": p.name, "partitions": partitions, "lag": sum(known) if known else None,
            "caughtUp": bool(partitions) and all(x["lag"] == 0 for x in partitions), "setAside": p.set_aside}


RETENTION_DEADLINE_S = 5.0


async def _retention(url: str) -> dict[str, Any]:
    """The embedded retention job's last pass (`GET <url>/progress`), or why it could not be read."""
    timeout = aiohttp.ClientTimeout(total=RETENTION_DEADLINE_S)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(
                url.rstrip("/") + "/progress", headers=internal_auth.headers()) as resp:
            if resp.status != 200:
                return {"reachable": False, "error": f"retention answered {resp.status}"}
            return {"reachable": True, **await resp.json()}
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return {"reachable": False, "error": f"retention unreachable: {type(exc).__name__}: {exc}"}


@router.get("/pipeline", summary="How far each follower of the request-log topic has got (lag per partition)")
async def pipeline(request: Request) -> dict:
    """log-ingest (storing logs) and the dataset service (standing import rules): per partition, the
    offset below which every record is handled, the partition's end at the follower's last fetch, the
    lag between them, and how many records were set aside as dead letters since each service started.
    On the embedded stack, `retention` adds the job that deletes the request-log batches every reader
    has committed: per partition each reader's committed offset, the first offset still stored, the
    batches kept and deleted, and which readers hold it back (Kafka's own retention is not shown)."""
    deps = request.app.state.deps
    out: dict[str, Any] = {
        "logIngest": _follower(await call(deps.logs, "Progress", logs_pb2.ProgressRequest(), LOG_STORE))}
    if deps.datasets is not None:
        out["datasetRules"] = _follower(await call(deps.datasets, "RulesProgress", logs_pb2.ProgressRequest(),
                                                   DATASETS))
    if deps.settings.retention_url:
        out["retention"] = await _retention(deps.settings.retention_url)
    return out
