"""What a starting gateway sets up before it serves: its admin token, the default project, the read baseline."""

from __future__ import annotations

import asyncio
import logging
import secrets

from refinery.bus.producer import DurableProducer
from refinery.events.envelope import Envelope
from refinery.events.request_logs import READ_BARRIER
from refinery.secrets_box import SecretBox

from gateway.projects import ProjectRegistry
from gateway.reads import ReadBinder
from gateway.settings import GatewaySettings

log = logging.getLogger("refinery.gateway")


def admin_token(settings: GatewaySettings) -> str:
    """The admin API's token: from settings, else made once and kept in the data dir (0600)."""
    if settings.admin_token is not None:
        return settings.admin_token.get_secret_value().strip()
    path = settings.service_dir("gateway") / "admin-token"
    if not path.exists():
        path.write_text(secrets.token_hex(24))
        path.chmod(0o600)
    return path.read_text().strip()


def secret_box(settings: GatewaySettings) -> SecretBox:
    """The box of provider secrets: the configured key, else the one kept in the data dir (0600)."""
    key = settings.encryption_key.get_secret_value() if settings.encryption_key is not None else None
    return SecretBox.from_key_or_file(key, settings.service_dir("gateway") / "secret.key")


def bootstrap(settings: GatewaySettings, registry: ProjectRegistry) -> None:
    """Headless first start: the default project, its key and its providers (`REFINERY_INIT_*`)."""
    if not settings.init_api_key:
        if not registry.all_projects():
            project, _ = registry.create_project("default")
            log.warning("created default project %s", project.id)
        return
    project_id = registry.authenticate(settings.init_api_key)
    if project_id is None:
        existing = registry.find_by_name("default")
        name = "default" if existing is None else f"default-{secrets.token_hex(3)}"
        project, _ = registry.create_project(name, settings.init_api_key)
        project_id = project.id
    current = {p.provider: p for p in registry.providers(project_id)}
    for provider in ("openai", "anthropic", "gemini"):
        base_url = getattr(settings, f"init_{provider}_base_url")
        if not base_url:
            continue
        base_url = base_url.rstrip("/")
        key = getattr(settings, f"init_{provider}_api_key") or ""
        have = current.get(provider)
        if have is None or have.base_url != base_url or have.api_key != key:
            registry.set_provider(project_id, provider, base_url, key)


async def mark_baseline(producer: DurableProducer, reads: ReadBinder) -> None:
    """Bind reads to everything on the bus before this process started (see ReadBinder)."""
    marker = Envelope(type=READ_BARRIER, aggregate_id="gateway", project_id="", data={}).to_bytes()
    while reads.baseline is None:
        positions = await producer.mark_every_partition(marker)
        if positions is None:
            await asyncio.sleep(0.5)
            continue
        reads.baseline = {p.partition: p.offset for p in positions}
