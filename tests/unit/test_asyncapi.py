"""The published AsyncAPI document: current, complete, and backward compatible with the committed copy."""

from __future__ import annotations

import ast
import copy
import importlib
import json
import pkgutil
import re
from pathlib import Path

import pytest
import refinery.events
from refinery.events.asyncapi import REGENERATE, asyncapi_document, breaking_changes, event_fields, render
from refinery.events.catalogue import CATALOGUE, TOPICS

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "docs" / "asyncapi.json"
EVENT_TYPE = re.compile(r"[a-z][a-z_]*\.[a-z][a-z_0-9]*(\.v[0-9]+)?")


@pytest.fixture(scope="module")
def document() -> dict:
    return asyncapi_document()


@pytest.fixture(scope="module")
def committed() -> dict:
    return json.loads(COMMITTED.read_text())


def _defined_event_types() -> dict[str, str]:
    """Module-level string constants of refinery.events.* that look like event types, by value."""
    topics = {t.name for t in TOPICS}
    found: dict[str, str] = {}
    for info in pkgutil.iter_modules(refinery.events.__path__):
        module = importlib.import_module(f"refinery.events.{info.name}")
        for name, value in vars(module).items():
            if name.isupper() and isinstance(value, str) and EVENT_TYPE.fullmatch(value) and value not in topics:
                found[value] = f"{module.__name__}.{name}"
    return found


def _literal_envelope_types() -> dict[str, str]:
    """`Envelope(type="...")` written with a literal anywhere in the code, by value."""
    found: dict[str, str] = {}
    for path in [*(REPO / "services").rglob("*.py"), *(REPO / "libs").rglob("*.py")]:
        try:
            tree = ast.parse(path.read_text(), str(path))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "Envelope":
                for kw in node.keywords:
                    if kw.arg == "type" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                        found[kw.value.value] = f"{path.relative_to(REPO)}:{node.lineno}"
    return found


def test_committed_document_is_current(document: dict, committed: dict) -> None:
    assert committed == document, (
        f"docs/asyncapi.json is out of date with the event models and catalogue; regenerate it with `{REGENERATE}`")
    assert COMMITTED.read_text() == render(document), (
        f"docs/asyncapi.json is not formatted as generated: `{REGENERATE}`")


def test_every_event_type_is_catalogued(document: dict) -> None:
    catalogued = [e.type for e in CATALOGUE]
    assert len(catalogued) == len(set(catalogued)), "an event type is catalogued twice"
    defined = {**_defined_event_types(), **_literal_envelope_types()}
    assert defined, "found no event type constants: has refinery.events moved?"
    missing = {value: where for value, where in defined.items() if value not in catalogued}
    assert not missing, f"add these event types to refinery/events/catalogue.py: {missing}"
    unknown = set(catalogued) - set(_defined_event_types())
    assert not unknown, f"catalogued types without a constant in refinery.events: {sorted(unknown)}"
    assert {e.topic for e in CATALOGUE} == {t.name for t in TOPICS}
    assert set(event_fields(document)) == set(catalogued)


def test_request_log_recorded_carries_what_consumers_read(document: dict) -> None:
    fields = event_fields(document)["request_log.recorded"]
    needed = {
        "event_id", "type", "aggregate_id", "project_id", "occurred_at",
        "data.log_id", "data.source", "data.received_at", "data.requested_at", "data.completed_at",
        "data.provider", "data.model", "data.status_code", "data.error_message", "data.req_payload",
        "data.resp_payload", "data.resp_openai", "data.metadata", "data.cache_hit", "data.usage.prompt_tokens",
        "data.usage.completion_tokens", "data.usage.total_tokens", "data.cost_usd", "data.completion_id",
    }
    assert needed <= fields, f"request_log.recorded lacks {sorted(needed - fields)}"
    schema = document["components"]["schemas"]["RequestLogRecordedEvent"]
    assert schema["properties"]["type"]["const"] == "request_log.recorded"
    channel = document["channels"]["refinery.request-logs"]
    message = document["components"]["messages"][channel["messages"]["Message"]["$ref"].rsplit("/", 1)[1]]
    payload = document["components"]["schemas"][message["payload"]["$ref"].rsplit("/", 1)[1]]
    assert payload["discriminator"] == "type"
    assert {"$ref": "#/components/schemas/RequestLogRecordedEvent"} in payload["oneOf"]
    assert message["bindings"]["kafka"]["key"]["description"].startswith("project id")


def test_no_event_field_was_removed(document: dict, committed: dict) -> None:
    problems = breaking_changes(committed, document)
    assert not problems, (
        "events are a public interface for downstream consumers, and the code no longer matches the committed "
        f"docs/asyncapi.json: {'; '.join(problems)}. Keep the field (it may become optional), or publish the new "
        f"shape under a new, suffixed type (e.g. `request_log.recorded.v2`) and keep the old one. Only a deliberate "
        f"break may regenerate the document (`{REGENERATE}`).")


def test_the_compatibility_check_catches_removals_and_renames(committed: dict) -> None:
    assert breaking_changes(committed, committed) == []
    changed = copy.deepcopy(committed)
    data = changed["components"]["schemas"]["RequestLogRecorded"]["properties"]
    data["model_name"] = data.pop("model")
    del changed["components"]["schemas"]["Usage"]["properties"]["total_tokens"]
    del changed["components"]["schemas"]["DatasetCreatedEvent"]
    problems = breaking_changes(committed, changed)
    assert "'request_log.recorded' lost field(s) data.model, data.usage.total_tokens" in problems
    assert "event type 'dataset.created' is gone" in problems
    added = copy.deepcopy(committed)
    added["components"]["schemas"]["RequestLogRecorded"]["properties"]["extra"] = {"type": "string"}
    assert breaking_changes(committed, added) == []


def test_cli_prints_the_document(document: dict, capsys: pytest.CaptureFixture[str]) -> None:
    from refinery.cli import main

    main(["asyncapi"])
    assert capsys.readouterr().out == render(document)
    yaml = pytest.importorskip("yaml")
    main(["asyncapi", "--format", "yaml"])
    assert yaml.safe_load(capsys.readouterr().out) == document


def test_gateway_serves_it_without_a_key_and_outside_openapi(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient
    from gateway.app import Deps, build_app
    from gateway.settings import GatewaySettings

    async def health() -> dict[str, bool]:
        return {}

    settings = GatewaySettings(data_dir=tmp_path, request_logs_topic="acme.request-logs")
    app = build_app(Deps(settings=settings, projects=None, producer=None, reads=None,  # type: ignore[arg-type]
                         logs=None, admin_token="t", health=health))
    with TestClient(app) as client:
        response = client.get("/asyncapi.json")
        assert response.status_code == 200
        doc = response.json()
        assert "/asyncapi.json" not in client.get("/openapi.json").json()["paths"]
    assert doc == asyncapi_document({"refinery.request-logs": "acme.request-logs"})
    assert doc["channels"]["acme.request-logs"]["address"] == "acme.request-logs"
    assert "refinery.request-logs" not in doc["channels"]
