"""Admin routes used by the `refinery` CLI: projects and their provider settings."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from gateway.auth import admin_only
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
