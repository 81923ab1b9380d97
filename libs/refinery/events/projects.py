"""Project events: projects, their API keys and provider settings (owned by the gateway).

Secrets never appear here in clear: API keys travel as their hash, provider keys encrypted.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from refinery.events.envelope import Envelope

PROJECT_CREATED = "project.created"
API_KEY_ISSUED = "project.api_key_issued"
PROVIDER_CONFIGURED = "project.provider_configured"


class ProjectCreated(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str


class ApiKeyIssued(BaseModel):
    model_config = ConfigDict(frozen=True)
    key_hash: str
    key_prefix: str


class ProviderConfigured(BaseModel):
    model_config = ConfigDict(frozen=True)
    provider: str
    base_url: str
    api_key_encrypted: str


def project_event(project_id: str, version: int, event_type: str, data: BaseModel) -> Envelope:
    return Envelope(
        type=event_type,
        aggregate_id=project_id,
        version=version,
        project_id=project_id,
        data=data.model_dump(),
    )
