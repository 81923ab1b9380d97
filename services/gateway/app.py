"""The gateway's FastAPI application, built from its dependencies."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

from console import serving as console
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from refinery.bus.producer import DurableProducer, NotKept
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import (
    admin_api,
    criteria_api,
    datasets_api,
    dead_letters_api,
    evals_api,
    logs_api,
    models_api,
    project_api,
    recording,
)
from gateway.errors import (
    ApiError,
    OrjsonResponse,
    api_error_handler,
    http_error_handler,
    payload_too_large,
    send_error,
    validation_error_handler,
)
from gateway.projects import ProjectRegistry
from gateway.reads import ReadBinder
from gateway.settings import GatewaySettings


@dataclass
class Deps:
    settings: GatewaySettings
    projects: ProjectRegistry
    producer: DurableProducer
    reads: ReadBinder
    logs: Any  # LogStoreStub
    admin_token: str
    health: Any  # async () -> dict[str, bool]
    proxy: Any = None  # ProxyForwarder
    datasets: Any = None  # DatasetsStub
    models: Any = None  # ModelRegistryStub
    criteria: Any = None  # CriteriaStub
    evals: Any = None  # EvalsStub
    dead_letters: Any = None  # DeadLetterBook
    replayer: Any = None  # Replayer


class BodyLimit:
    """Rejects bodies over the limit with 413 before the route reads them."""

    def __init__(self, app: ASGIApp, max_bytes: int, stream_max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.stream_max_bytes = stream_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # File uploads stream through to object storage, so they get their own (larger) limit.
        limit = self.stream_max_bytes if _UPLOAD_PATH.match(scope.get("path", "")) else self.max_bytes
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await send_error(send, payload_too_large(limit))
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await send_error(send, payload_too_large(limit))


_UPLOAD_PATH = re.compile(r"^/api/v1/datasets/[^/]+/uploads$")


class _TooLarge(Exception):
    pass


async def not_kept_handler(request: Request, exc: NotKept) -> OrjsonResponse:
    """Any write the bus and the spool could not keep (projects, admin): 507 or 503, never a 500."""
    return await api_error_handler(request, recording.not_kept(exc))


def build_app(deps: Deps) -> FastAPI:
    app = FastAPI(
        title="Refinery API",
        version="0.1.0",
        description="OpenPipe-compatible API: request logging, chat completions and more.",
    )
    app.state.deps = deps
    # Starlette types handlers as taking any Exception; each of these takes the one it is registered for.
    app.add_exception_handler(ApiError, api_error_handler)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, validation_error_handler)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error_handler)  # type: ignore[arg-type]
    app.add_exception_handler(NotKept, not_kept_handler)  # type: ignore[arg-type]
    app.include_router(logs_api.router)
    app.include_router(project_api.router)
    app.include_router(admin_api.router)
    app.include_router(dead_letters_api.router)
    if deps.datasets is not None:
        app.include_router(datasets_api.router)
    if deps.models is not None:
        app.include_router(models_api.router)
    if deps.criteria is not None:
        app.include_router(criteria_api.router)
    if deps.evals is not None:
        app.include_router(evals_api.router)
    if deps.proxy is not None:
        from gateway import chat_api

        app.include_router(chat_api.router)

    @app.get("/health", summary="200 only when every service is ready")
    async def health() -> OrjsonResponse:
        status = await deps.health()
        ok = all(status.values())
        return OrjsonResponse({"status": "ok" if ok else "unavailable", "services": status},
                              status_code=200 if ok else 503)

    @app.get("/asyncapi.json", include_in_schema=False)
    async def asyncapi() -> OrjsonResponse:
        """The AsyncAPI document of the bus (no key, like /openapi.json), with this deployment's topic names.

        Built on first request, off the event loop, and kept: generating it takes a few hundred ms."""
        if app.state.asyncapi is None:
            app.state.asyncapi = await asyncio.to_thread(_asyncapi_document, deps.settings)
        return OrjsonResponse(app.state.asyncapi)

    app.state.asyncapi = None
    console.mount(app)
    app.add_middleware(BodyLimit, max_bytes=deps.settings.max_body_bytes,
                       stream_max_bytes=deps.settings.max_upload_bytes)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _asyncapi_document(settings: GatewaySettings) -> dict:
    from refinery.config import DATASETS_TOPIC, MODELS_TOPIC, PROJECTS_TOPIC, REQUEST_LOGS_TOPIC
    from refinery.events.asyncapi import asyncapi_document

    return asyncapi_document({
        REQUEST_LOGS_TOPIC: settings.request_logs_topic, PROJECTS_TOPIC: settings.projects_topic,
        MODELS_TOPIC: settings.models_topic, DATASETS_TOPIC: settings.datasets_topic,
    })


_ERROR_SCHEMA = {
    "type": "object",
    "required": ["message", "code"],
    "properties": {
        "message": {"type": "string"},
        "code": {"type": "string"},
        "issues": {"type": "array", "items": {"type": "object", "required": ["message"],
                                              "properties": {"message": {"type": "string"}}}},
    },
}


def _openapi(app: FastAPI) -> dict:
    """FastAPI's document, with the error responses this API really gives (400, not 422)."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = _ERROR_SCHEMA
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    for path, item in schema.get("paths", {}).items():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            responses["400"] = {"description": "Invalid input", **error}
            if path != "/health":
                responses["401"] = {"description": "Missing or invalid key", **error}
            if path.startswith(("/api/v1/datasets", "/api/v1/unstable", "/api/v1/models")):
                responses["404"] = {"description": "No such dataset or item in this project", **error}
                responses["503"] = {"description": "The dataset service is unavailable; retry", **error}
            if path.startswith("/api/v1/criteria"):
                responses["404"] = {"description": "No such criterion, version or row in this project", **error}
                responses["409"] = {"description": "The criterion name is taken", **error}
                responses["503"] = {"description": "The criteria service is unavailable; retry", **error}
            if path.startswith("/api/v1/evals"):
                responses["404"] = {"description": "No such eval, or an unknown dataset, model or criterion", **error}
                responses["409"] = {"description": "The eval conflicts with the service's state", **error}
                responses["503"] = {"description": "The eval service is unavailable; retry", **error}
            if path == "/api/v1/criteria/judge":
                responses["504"] = {"description": "The judge did not answer in time", **error}
            if path.startswith("/api/v1/logs") or path.startswith("/api/v1/local"):
                responses["503"] = {"description": "The log store is catching up; retry", **error}
    for name in ("HTTPValidationError", "ValidationError"):
        schema["components"]["schemas"].pop(name, None)
    app.openapi_schema = schema
    return schema
