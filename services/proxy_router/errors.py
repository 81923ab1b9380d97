"""The proxy's typed error and the one body every error answer has (spec/SDK-CONTRACT.md).

The steps of a call raise `ProxyError`; only `ChatProxy.handle` turns it into HTTP.
"""

from __future__ import annotations

import orjson
from aiohttp import web

JSON = "application/json"
CODES = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 404: "NOT_FOUND", 502: "BAD_GATEWAY", 503: "SERVICE_UNAVAILABLE",
         507: "INSUFFICIENT_STORAGE"}


class ProxyError(Exception):
    """A call the proxy answers itself with an error (and has logged, where it logs at all)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    @property
    def code(self) -> str:
        return CODES.get(self.status, "BAD_REQUEST")

    def response(self) -> web.Response:
        body = {"message": self.message, "code": self.code, "issues": [],
                "error": {"message": self.message, "type": self.code.lower()}}
        return web.Response(body=orjson.dumps(body), status=self.status, content_type=JSON)
