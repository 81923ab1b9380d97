"""Typed API errors and the one error body every non-2xx response carries."""

from __future__ import annotations

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send


class OrjsonResponse(Response):
    """JSON rendered with orjson (fast, and passes pre-serialised fragments through)."""

    media_type = "application/json"

    def render(self, content: object) -> bytes:
        return orjson.dumps(content)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, issues: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.issues = issues or []


def error_body(code: str, message: str, issues: list[str] | None = None) -> dict:
    return {"message": message, "code": code, "issues": [{"message": m} for m in (issues or [])]}


def payload_too_large(limit: int) -> ApiError:
    return ApiError(413, "PAYLOAD_TOO_LARGE", f"Request body exceeds {limit} bytes")


async def send_error(send: Send, exc: ApiError) -> None:
    """The error answered on bare ASGI (body limit, hot paths), with the body FastAPI's handler gives."""
    body = orjson.dumps(error_body(exc.code, exc.message, exc.issues))
    await send({"type": "http.response.start", "status": exc.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


_CODES = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND",
          405: "METHOD_NOT_SUPPORTED", 413: "PAYLOAD_TOO_LARGE", 422: "BAD_REQUEST",
          503: "SERVICE_UNAVAILABLE"}


def _loc(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if p not in ("body",)) or "body"


async def api_error_handler(_: Request, exc: ApiError) -> OrjsonResponse:
    return OrjsonResponse(error_body(exc.code, exc.message, exc.issues), status_code=exc.status)


async def validation_error_handler(_: Request, exc: RequestValidationError) -> OrjsonResponse:
    issues = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            issues.append(f"body is not valid JSON: {err.get('ctx', {}).get('error', err.get('msg'))}")
        else:
            issues.append(f"{_loc(tuple(err.get('loc', ())))}: {err.get('msg')}")
    return OrjsonResponse(error_body("BAD_REQUEST", "Input validation failed", issues), status_code=400)


async def http_error_handler(_: Request, exc: StarletteHTTPException) -> OrjsonResponse:
    status = 400 if exc.status_code == 422 else exc.status_code
    message = exc.detail if isinstance(exc.detail, str) else "Request failed"
    return OrjsonResponse(error_body(_CODES.get(status, "ERROR"), message), status_code=status)
