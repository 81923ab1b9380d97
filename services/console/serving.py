"""Serving the console's files from the gateway: `/` is the page, `/console/...` its assets.

The page is a static shell; every datum comes from the REST API with the signed-in key. A strict
Content-Security-Policy allows scripts, styles and calls from this origin only, so a log's content
rendered on the page can never run as script or send the key elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

STATIC_DIR = Path(__file__).parent / "static"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
_HEADERS = {"content-security-policy": CSP, "x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}


class _Assets(StaticFiles):
    """Static files with the console's security headers; revalidated on each load (they are small)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []),
                                      *((k.encode(), v.encode()) for k, v in _HEADERS.items()),
                                      (b"cache-control", b"no-cache")]
            await send(message)

        await super().__call__(scope, receive, with_headers)


def mount(app: FastAPI) -> None:
    """Adds the console's routes to the gateway (outside the OpenAPI document: they are not API)."""
    index = STATIC_DIR / "index.html"

    @app.get("/", include_in_schema=False)
    async def console_page() -> Response:
        return FileResponse(index, headers={**_HEADERS, "cache-control": "no-cache"})

    app.mount("/console", _Assets(directory=STATIC_DIR), name="console")
