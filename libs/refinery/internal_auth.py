"""The shared service token that every internal call carries, and its check on internal HTTP.

Internal ports (every gRPC server, proxy-router's and inference's HTTP) hand out what only a
trusted peer may see: decrypted provider keys, any project's chat routing. So each call carries
one token shared by the services of a deployment (`REFINERY_INTERNAL_TOKEN`), compared in constant
time; only health answers without it, so probes keep working.

Where the token comes from (`resolve`): the setting, when given. Otherwise it is made once and kept
in `<data_dir>/internal-token` (0600), with a warning: services started by hand on one machine share
the default data dir and so the token, with nothing to configure, while a fleet of containers with
their own disks and no setting fails closed (every call UNAUTHENTICATED), never open. Deployments
set `REFINERY_INTERNAL_TOKEN_REQUIRED=true`, and then a missing token stops the service at start-up
with a message naming the setting.

A process is one service, so the kernel installs the resolved token once (`use_token`) and every
client channel and internal HTTP client of the process attaches it from there.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

log = logging.getLogger("refinery.internal_auth")

HEADER = "x-refinery-internal-token"
"""HTTP header and gRPC metadata key (gRPC keys are lowercase) that carries the token."""

REFUSED = "this internal call needs the deployment's service token (REFINERY_INTERNAL_TOKEN)"
"""The one answer to a missing or wrong token: it says what is needed and nothing about what was sent."""

HEALTH_PATHS = frozenset({"/health"})
TOKEN_FILE = "internal-token"

_process_token: str | None = None


class MissingInternalToken(ValueError):
    """A deployment that requires the token was started without one."""


def matches(given: str | bytes | None, expected: str) -> bool:
    """Whether `given` is the token, in time independent of where they differ (hmac.compare_digest)."""
    if given is None:
        return False
    raw = given.encode() if isinstance(given, str) else given
    return hmac.compare_digest(raw, expected.encode())


def load_or_create(data_dir: Path) -> str:
    """The token kept in `<data_dir>/internal-token`, made (mode 0600) when missing."""
    path = data_dir / TOKEN_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def resolve(configured: str | None, data_dir: Path, *, required: bool) -> str:
    """The token this service uses: `configured`, or the data dir's (see the module docstring)."""
    if configured:
        return configured
    if required:
        raise MissingInternalToken(
            "REFINERY_INTERNAL_TOKEN is not set and REFINERY_INTERNAL_TOKEN_REQUIRED is on: set the same random "
            "value (e.g. `openssl rand -hex 32`) on every service of this deployment")
    path = data_dir.resolve() / TOKEN_FILE
    log.warning("REFINERY_INTERNAL_TOKEN is not set: using the token in %s, which only services sharing this data "
                "dir know; set REFINERY_INTERNAL_TOKEN on every service when they run apart", path)
    return load_or_create(data_dir)


def use_token(token: str | None) -> None:
    """Install the process's token: client channels and internal HTTP clients attach it from here."""
    global _process_token
    _process_token = token


def current_token() -> str | None:
    """The process's token, or None when none was installed (a bare test server)."""
    return _process_token


def headers() -> dict[str, str]:
    """The header an internal HTTP request carries (empty when the process has no token)."""
    return {HEADER: _process_token} if _process_token else {}


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def http_guard(token: str) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """aiohttp middleware: every route but health answers 401 without the token."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in HEALTH_PATHS or matches(request.headers.get(HEADER), token):
            return await handler(request)
        return web.json_response({"message": REFUSED, "code": "UNAUTHORIZED", "issues": [],
                                  "error": {"message": REFUSED, "type": "unauthorized", "code": "UNAUTHORIZED"}},
                                 status=401)

    return guard
