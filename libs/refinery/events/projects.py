"""Project events: projects, their API keys and provider settings (owned by the gateway).

Secrets never appear here in clear: API keys travel as their hash, provider keys encrypted.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from refinery.events.envelope import Envelope

PROJECT_CREATED = "project.created"
API_KEY_ISSUED = "project.api_key_issued"
API_KEY_REVOKED = "project.api_key_revoked"
PROVIDER_CONFIGURED = "project.provider_configured"


class ProjectCreated(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str


class ApiKeyIssued(BaseModel):
    model_config = ConfigDict(frozen=True)
    key_hash: str
    key_prefix: str
    # Added later (older events carry none of these): the key's stable id, a label, and whether it
    # may only read.
    key_id: str | None = None
    name: str = ""
    read_only: bool = False
    expires_at: float | None = None  # seconds since the epoch; the key stops authenticating then


class ApiKeyRevoked(BaseModel):
    """The key stops authenticating at once; its row stays listed as revoked."""

    model_config = ConfigDict(frozen=True)
    key_id: str
    key_hash: str


class ModelCost(BaseModel):
    """What a provider charges for a model, USD per million tokens."""

    model_config = ConfigDict(frozen=True)
    input_per_mtok: float
    output_per_mtok: float


class ProviderConfigured(BaseModel):
    model_config = ConfigDict(frozen=True)
    provider: str
    base_url: str
    api_key_encrypted: str
    # Added later (older events have none): the project's own prices for this provider's models; they
    # win over the list prices Refinery knows.
    model_costs: dict[str, ModelCost] = {}


def project_event(project_id: str, version: int, event_type: str, data: BaseModel) -> Envelope:
    return Envelope(
        type=event_type,
        aggregate_id=project_id,
        version=version,
        project_id=project_id,
        data=data.model_dump(),
    )
