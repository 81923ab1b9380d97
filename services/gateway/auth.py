"""Bearer authentication: every /api/v1 route resolves the caller's project from its key.

`bearer_token` is the one reading of the `Authorization` header: the FastAPI dependencies below and
the bare-ASGI hot paths both use it, so a key the one accepts the other accepts too.
"""

from __future__ import annotations

from fastapi import Request
from refinery.internal_auth import matches

from gateway.errors import ApiError


def bearer_token(authorization: str | None) -> str | None:
    """The token of `Bearer <token>` (scheme in any case), or None for a missing, empty or other scheme."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


# POSTs that change nothing: searches and exports take their filters in a body.
READING_POSTS = frozenset({"/api/v1/logs/search", "/api/v1/logs/export"})
_READING_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def is_write(method: str, path: str) -> bool:
    """Whether a request may change something (or spend money): what a read-only key is refused."""
    return method not in _READING_METHODS and path not in READING_POSTS


async def project_of(request: Request) -> str:
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise ApiError(401, "UNAUTHORIZED", "Missing API key: send `Authorization: Bearer <project API key>`")
    projects = request.app.state.deps.projects
    project_id = projects.authenticate(token)
    if project_id is None:
        raise ApiError(401, "UNAUTHORIZED", "Invalid API key")
    if is_write(request.method, request.url.path) and not projects.can_write(token):
        raise ApiError(403, "FORBIDDEN", f"This API key is read-only: it can read but not "
                                         f"{request.method} {request.url.path}")
    return project_id


async def admin_only(request: Request) -> None:
    """The admin token, compared in constant time: a timing difference would let it be guessed byte by byte."""
    token = bearer_token(request.headers.get("authorization"))
    if not matches(token, request.app.state.deps.admin_token):
        raise ApiError(401, "UNAUTHORIZED", "Admin token required")
