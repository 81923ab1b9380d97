"""The signed-in project: who it is, its API keys, and its upstream providers (Refinery's own routes).

The console's settings pages use these with the project's key. A key is shown once, when it is
issued; afterwards only its first characters. Provider keys are write-only: the page learns that
one is set and its last four characters, never the secret.
"""

from __future__ import annotations

import asyncio
import re
import time

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from gateway.auth import bearer_token, project_of
from gateway.errors import ApiError
from gateway.projects import ApiKey, KeyRefused

router = APIRouter(prefix="/api/v1", tags=["project"])

_PROVIDER = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class ProjectInfoOut(BaseModel):
    id: str
    name: str
    readOnly: bool = Field(description="Whether the key of this request may only read")


class KeyOut(BaseModel):
    id: str
    name: str
    prefix: str = Field(description="The key's first characters, to tell keys apart")
    readOnly: bool
    createdAt: float | None = Field(description="Seconds since the epoch")
    revokedAt: float | None = None
    expiresAt: float | None = Field(default=None, description="Seconds since the epoch; null: never")


class KeysOut(BaseModel):
    data: list[KeyOut]


class IssueKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=200)
    readOnly: bool = False
    expiresInDays: float | None = Field(default=None, gt=0, le=3650,
                                        description="The key stops working this many days after it is issued")


class IssuedKeyOut(KeyOut):
    key: str = Field(description="The key itself: shown this once, only its hash is kept")


class ModelCostIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputPerMTok: float = Field(ge=0, le=1_000_000, description="USD per million prompt tokens")
    outputPerMTok: float = Field(ge=0, le=1_000_000, description="USD per million completion tokens")


class ProviderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    baseUrl: str = Field(min_length=1, max_length=500, pattern=r"^https?://")
    apiKey: str = Field(min_length=1, max_length=2000)
    modelCosts: dict[str, ModelCostIn] = Field(
        default_factory=dict, max_length=1000,
        description="Your prices per model (the name as this provider knows it): the cost of every logged call "
                    "and eval output uses them instead of the list prices")


class ProviderOut(BaseModel):
    provider: str
    baseUrl: str
    apiKeyHint: str = Field(description="The provider key's last four characters; the key is never returned")
    modelCosts: dict[str, ModelCostIn] = Field(default_factory=dict)


class ProvidersOut(BaseModel):
    data: list[ProviderOut]


def _key(k: ApiKey) -> dict:
    return {"id": k.id, "name": k.name, "prefix": k.prefix, "readOnly": k.read_only,
            "createdAt": k.created_at, "revokedAt": k.revoked_at, "expiresAt": k.expires_at}


@router.get("/project", response_model=ProjectInfoOut, summary="The project of this API key")
async def project_info(request: Request, project_id: str = Depends(project_of)) -> ProjectInfoOut:
    projects = request.app.state.deps.projects
    project = await asyncio.to_thread(projects.get, project_id)
    if project is None:
        raise ApiError(404, "NOT_FOUND", "project not found")
    token = bearer_token(request.headers.get("authorization")) or ""
    return ProjectInfoOut(id=project.id, name=project.name, readOnly=not projects.can_write(token))


@router.get("/keys", response_model=KeysOut, summary="The project's API keys (revoked ones included)")
async def list_keys(request: Request, project_id: str = Depends(project_of)) -> KeysOut:
    keys = await asyncio.to_thread(request.app.state.deps.projects.keys, project_id)
    return KeysOut(data=[KeyOut(**_key(k)) for k in keys])


@router.post("/keys", status_code=201, response_model=IssuedKeyOut,
             summary="Issue an API key (`readOnly`: it can read every route but change nothing)")
async def issue_key(body: IssueKeyIn, request: Request, project_id: str = Depends(project_of)) -> IssuedKeyOut:
    expires_at = time.time() + body.expiresInDays * 86_400 if body.expiresInDays is not None else None
    info, key = await asyncio.to_thread(request.app.state.deps.projects.issue_key, project_id, body.name,
                                        read_only=body.readOnly, expires_at=expires_at)
    return IssuedKeyOut(**_key(info), key=key)


@router.delete("/keys/{key_id}", response_model=KeyOut, summary="Revoke an API key: it stops working at once")
async def revoke_key(key_id: str, request: Request, project_id: str = Depends(project_of)) -> KeyOut:
    try:
        info = await asyncio.to_thread(request.app.state.deps.projects.revoke_key, project_id, key_id)
    except KeyError as exc:
        raise ApiError(404, "NOT_FOUND", f"API key {key_id} not found (or already revoked)") from exc
    except KeyRefused as exc:
        raise ApiError(409, "CONFLICT", str(exc)) from exc
    return KeyOut(**_key(info))


@router.get("/providers", response_model=ProvidersOut, summary="The project's upstream providers (no secrets)")
async def list_providers(request: Request, project_id: str = Depends(project_of)) -> ProvidersOut:
    settings = await asyncio.to_thread(request.app.state.deps.projects.providers, project_id)
    return ProvidersOut(data=[ProviderOut(provider=p.provider, baseUrl=p.base_url, apiKeyHint=p.api_key[-4:],
                                          modelCosts=_costs_out(p.model_costs))
                              for p in sorted(settings, key=lambda p: p.provider)])


def _costs_out(costs: dict[str, tuple[float, float]]) -> dict[str, ModelCostIn]:
    return {m: ModelCostIn(inputPerMTok=i, outputPerMTok=o) for m, (i, o) in sorted(costs.items())}


@router.put("/providers/{provider}", response_model=ProviderOut,
            summary="Set an upstream provider: openai, anthropic, gemini, or a custom OpenAI-compatible one")
async def set_provider(provider: str, body: ProviderIn, request: Request,
                       project_id: str = Depends(project_of)) -> ProviderOut:
    if not _PROVIDER.match(provider):
        raise ApiError(400, "BAD_REQUEST", "provider: lower-case letters, digits, '-' and '_', at most 64")
    if bad := [m for m in body.modelCosts if not m.strip() or len(m) > 300]:
        raise ApiError(400, "BAD_REQUEST", "Input validation failed",
                       [f"modelCosts: {m!r} is not a model name (1-300 characters)" for m in bad[:20]])
    base_url = body.baseUrl.rstrip("/")
    costs = {m: (c.inputPerMTok, c.outputPerMTok) for m, c in body.modelCosts.items()}
    await asyncio.to_thread(request.app.state.deps.projects.set_provider, project_id, provider, base_url,
                            body.apiKey, costs)
    return ProviderOut(provider=provider, baseUrl=base_url, apiKeyHint=body.apiKey[-4:],
                       modelCosts=_costs_out(costs))
