"""Fuzz every operation of the live `/openapi.json`: never a 5xx, and every 4xx carries the error body.

Schemathesis generates valid (positive) and invalid (negative) requests for each operation the gateway
documents, sends them with the right credentials (the admin token under `/admin/v1`, a project key
elsewhere) and checks each response. Failures are collected rather than raised inside Hypothesis, so a
run reports every distinct server bug at once and never spends time shrinking over the network.

The fuzzing runs in a project of its own, so its metadata updates never touch other tests' logs, and that
project's OpenAI provider is a tiny upstream in this file that answers any body with a well-formed
completion (or stream): a 5xx seen here is Refinery's own, not a fake upstream choking on fuzzed input.

A second test sends hand-written hostile bodies to every POST route (arrays and scalars instead of objects,
deep nesting, numbers past float/int64 range, invalid UTF-8, empty bodies, wrong content types), either
alone or planted in one field of an otherwise valid body, and wants a 4xx with the error body (or, where
the hostile value sits in a free-form field, at least no 5xx).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import response_schema_conformance


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: schemathesis.SerializationContext, value: Any) -> dict[str, Any]:
    """JSONL uploads are raw bytes on the wire (whatever the generator made of them)."""
    if isinstance(value, bytes):
        return {"data": value}
    return {"data": value.encode() if isinstance(value, str) else json.dumps(value).encode()}


MAX_EXAMPLES = 30  # per operation and generation mode
REQUEST_TIMEOUT_S = 15
STREAMING_TYPES = ("text/event-stream", "application/x-ndjson")

FUZZ_SETTINGS = hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,  # the same cases on every run: CI failures reproduce locally
    database=None,
    phases=(Phase.explicit, Phase.generate),  # failures are collected, never shrunk over the network
    suppress_health_check=list(HealthCheck),
    verbosity=hypothesis.Verbosity.quiet,
)


# --- the documented error body -------------------------------------------------------------------------------


def error_body_problem(status: int, content: bytes) -> str | None:
    """Why a 4xx body is not `{"message": str, "code": str, "issues": [{"message": str}]}`, or None."""
    try:
        body = json.loads(content)
    except ValueError:
        return f"{status} body is not JSON: {content[:300]!r}"
    if not isinstance(body, dict):
        return f"{status} body is not a JSON object: {content[:300]!r}"
    if not isinstance(body.get("message"), str) or not body["message"]:
        return f"{status} body has no non-empty string `message`: {content[:300]!r}"
    if not isinstance(body.get("code"), str) or not body["code"]:
        return f"{status} body has no string `code`: {content[:300]!r}"
    issues = body.get("issues")
    if not isinstance(issues, list) or not all(
        isinstance(i, dict) and isinstance(i.get("message"), str) for i in issues
    ):
        return f"{status} body has no `issues` list of {{message: str}}: {content[:300]!r}"
    return None


def error_body_shape(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """Schemathesis check: a 4xx answer carries the documented error body."""
    if 400 <= response.status_code < 500:
        problem = error_body_problem(response.status_code, response.content)
        assert problem is None, problem


def content_type_of(headers: Any) -> str:
    value = headers.get("content-type") or headers.get("Content-Type") or ""
    if isinstance(value, list):
        value = value[0] if value else ""
    return value.split(";")[0].strip().lower()


# --- findings ------------------------------------------------------------------------------------------------


@dataclass
class Finding:
    operation: str
    kind: str
    status: int | None
    detail: str
    reproduce: str
    body: str
    count: int = 1


@dataclass
class Findings:
    items: dict[tuple, Finding] = field(default_factory=dict)

    def add(self, operation: str, kind: str, status: int | None, detail: str, reproduce: str, body: str) -> None:
        key = (operation, kind, status)
        if key in self.items:
            self.items[key].count += 1
        else:
            self.items[key] = Finding(operation, kind, status, detail, reproduce, body[:1500])

    def report(self, data_dir: Path) -> str:
        lines = [f"{len(self.items)} distinct problem(s); stack data dir: {data_dir} (logs in {data_dir / 'logs'})"]
        for f in self.items.values():
            lines += [
                "",
                f"== {f.operation}: {f.kind} (status {f.status}, seen {f.count}x)",
                f"   {f.detail.strip()[:1500]}",
                f"   reproduce: {f.reproduce}",
                f"   response body: {f.body}",
            ]
        lines.append("")
        lines.append(server_tracebacks(data_dir))
        return "\n".join(lines)


def _log_tracebacks(text: str) -> list[str]:
    """Tracebacks in a service log: JSON lines with an `exc` field, or plain text ones."""
    found = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("exc"):
            found.append(f"[{record.get('level')}] {record.get('msg')}\n{record['exc']}")
    if not found:  # plain text: each traceback runs to its first unindented line, the exception
        for block in text.split("Traceback (most recent call last):")[1:]:
            lines = ["Traceback (most recent call last):"]
            for line in block.strip("\n").splitlines():
                lines.append(line)
                if line and not line[0].isspace():
                    break
            found.append("\n".join(lines))
    return found


def _failure_site(traceback: str) -> tuple[str, str]:
    """Where a traceback was raised and its exception type: the same bug, whatever the values."""
    lines = traceback.strip("\n").splitlines()
    frames = [line.strip() for line in lines if line.strip().startswith('File "')]
    return (frames[-1] if frames else "", re.sub(r"\d+", "N", lines[-1]) if lines else "")


def server_tracebacks(data_dir: Path, per_log: int = 5) -> str:
    """One traceback per distinct failure site in each service log, to point at the failing server code."""
    out = []
    for name in ("gateway", "proxy-router", "log-ingest"):
        path = data_dir / "logs" / f"{name}.log"
        if not path.exists():
            continue
        found = _log_tracebacks(path.read_text(errors="replace"))
        sites = list({_failure_site(tb): tb for tb in found}.values())
        if not sites:
            continue
        out.append(f"--- {path}: {len(found)} traceback(s) from {len(sites)} site(s):")
        out += ["\n".join(tb.strip("\n").splitlines()[-24:]) for tb in sites[-per_log:]]
    return "\n".join(out) or "(no tracebacks in the service logs)"


# --- an upstream that answers anything ------------------------------------------------------------------------


class _AnyBodyUpstream(BaseHTTPRequestHandler):
    """OpenAI-shaped chat completions for any JSON body: plain, or SSE when `stream` is true."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            body = {}
        body = body if isinstance(body, dict) else {}
        model = body.get("model") if isinstance(body.get("model"), str) else "fuzz"
        base = {"id": "chatcmpl-fuzz", "created": int(time.time()), "model": model}
        if body.get("stream") is True:
            chunks = [
                {**base, "object": "chat.completion.chunk",
                 "choices": [{"index": 0, "delta": {"role": "assistant", "content": "ok"}, "finish_reason": None}]},
                {**base, "object": "chat.completion.chunk",
                 "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            ]
            payload = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
            content_type = "text/event-stream"
        else:
            payload = json.dumps({
                **base, "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }).encode()
            content_type = "application/json"
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def any_body_upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AnyBodyUpstream)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def auth_for(path: str, stack, key: str) -> dict[str, str]:
    """The admin token under `/admin/`, the project key elsewhere."""
    token = stack.admin_token() if path.startswith("/admin/") else key
    return {"Authorization": f"Bearer {token}"}


def _create_project(stack, prefix: str) -> dict:
    resp = httpx.post(f"{stack.url}/admin/v1/projects", json={"name": f"{prefix}-{uuid.uuid4().hex[:8]}"},
                      headers=auth_for("/admin/", stack, ""), timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.fixture(scope="module")
def fuzz_key(stack, any_body_upstream: str) -> str:
    """A project of the fuzzer's own, its OpenAI provider the any-body upstream."""
    project = _create_project(stack, "openapi-fuzz")
    resp = httpx.put(f"{stack.url}/admin/v1/projects/{project['id']}/providers/openai",
                     json={"baseUrl": any_body_upstream, "apiKey": "sk-fuzz"},
                     headers=auth_for("/admin/", stack, ""), timeout=30)
    assert resp.status_code == 200, resp.text
    return project["apiKey"]


@pytest.fixture(scope="module")
def scratch_project_id(stack) -> str:
    """A project whose settings the fuzzer may overwrite at will (a real `{project_id}` to aim at)."""
    return _create_project(stack, "openapi-fuzz-scratch")["id"]


# --- schemathesis fuzzing ------------------------------------------------------------------------------------


def _checks_for(response: schemathesis.Response) -> list[Callable]:
    checks: list[Callable] = [not_a_server_error, error_body_shape]
    media = content_type_of(response.headers)
    # Streams are validated only for their status: their documented schema says nothing about the events.
    if 200 <= response.status_code < 300 and media not in STREAMING_TYPES and media.endswith("json"):
        checks.append(response_schema_conformance)
    return checks


def _fuzz(operation: Any, mode: GenerationMode, *, base_url: str, headers: dict[str, str],
          session: requests.Session, findings: Findings, path_parameters: dict[str, str] | None = None) -> int:
    """Send up to MAX_EXAMPLES generated cases for one operation; returns how many got a response."""
    label = f"{operation.method.upper()} {operation.path}"
    variant = mode.value + (f" with {path_parameters}" if path_parameters else "")
    token = "admin token" if operation.path.startswith("/admin/") else "project key"
    auth_hint = f"  # with Authorization: Bearer <{token}>"
    sent = 0
    unreachable = False

    @hypothesis.given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
    @FUZZ_SETTINGS
    def run(case: schemathesis.Case) -> None:
        nonlocal sent, unreachable
        if unreachable:
            return
        try:
            response = case.call(base_url=base_url, session=session, headers=headers, timeout=REQUEST_TIMEOUT_S)
        except requests.RequestException as exc:
            # A hang or a dropped connection is a server failure too; stop hammering this operation.
            unreachable = True
            findings.add(label, f"no response ({type(exc).__name__})", None, str(exc),
                         case.as_curl_command(headers=headers, base_url=base_url) + auth_hint, "")
            return
        sent += 1
        try:
            case.validate_response(response, checks=_checks_for(response), headers=headers)
        except FailureGroup as group:
            curl = case.as_curl_command(headers=headers, base_url=base_url) + auth_hint
            body = response.content.decode(errors="replace")
            for failure in group.exceptions:
                findings.add(label, f"{variant}: {failure.title}", response.status_code, failure.message, curl,
                             body)

    try:
        run()
    except Unsatisfiable:
        pass  # nothing to negate (e.g. an operation without parameters or body)
    return sent


# Every operation, eval and criteria routes included: ~170 s of fuzzing on a quiet machine, twice that under load.
@pytest.mark.timeout(900)
def test_fuzz_every_operation(stack, fuzz_key: str, scratch_project_id: str) -> None:
    schema = schemathesis.openapi.from_url(f"{stack.url}/openapi.json", timeout=30)
    operations = [result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)]
    errors = [result.err() for result in schema.get_all_operations() if not isinstance(result, Ok)]
    assert not errors, f"operations schemathesis could not read: {errors}"
    assert len(operations) >= 10, [f"{o.method} {o.path}" for o in operations]

    findings = Findings()
    untested = []
    with requests.Session() as session:
        for operation in operations:
            headers = auth_for(operation.path, stack, fuzz_key)
            positive = _fuzz(operation, GenerationMode.POSITIVE, base_url=stack.url, headers=headers,
                             session=session, findings=findings)
            _fuzz(operation, GenerationMode.NEGATIVE, base_url=stack.url, headers=headers,
                  session=session, findings=findings)
            if "{project_id}" in operation.path:  # random ids only ever reach the 404 branch
                _fuzz(operation, GenerationMode.POSITIVE, base_url=stack.url, headers=headers, session=session,
                      findings=findings, path_parameters={"project_id": scratch_project_id})
            if positive == 0:
                untested.append(f"{operation.method.upper()} {operation.path}")
    assert not findings.items, findings.report(stack.data_dir)
    assert not untested, f"operations that never got a response: {untested}"


# --- hand-written hostile bodies -----------------------------------------------------------------------------

DEPTH = 1000


def deep_array(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def deep_object(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


HUGE_INT = b"9" * 5000  # past Python's 4300-digit int parsing limit

# A body each known route accepts, so that "wrong content-type" is the only thing wrong with it.
VALID_BODIES: dict[str, dict] = {
    "/api/v1/report": {"reqPayload": {"model": "hostile"}, "statusCode": 200},
    "/api/v1/report-anthropic": {"reqPayload": {"model": "hostile"}, "statusCode": 200},
    "/api/v1/logs/update-metadata": {"filters": [{"field": "model", "equals": "hostile"}], "metadata": {"k": "v"}},
    "/api/v1/logs/update-tags": {"filters": [{"field": "model", "equals": "hostile"}], "tags": {"k": "v"}},
    "/api/v1/logs/search": {"filters": []},
    "/api/v1/logs/export": {"filters": []},
    "/api/v1/chat/completions": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    "/admin/v1/projects": {"name": "hostile-content-type"},
}


def _resolve(spec: dict, schema: dict) -> dict:
    while "$ref" in schema:
        node: Any = spec
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _post_routes(spec: dict) -> list[tuple[str, list[str]]]:
    """Each POST path with the top-level properties of its JSON body."""
    routes = []
    for path, item in spec["paths"].items():
        op = item.get("post")
        if op is None:
            continue
        body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
        props = list(_resolve(spec, body).get("properties", {}))
        routes.append((path, props))
    return routes


def _object_with(props: list[str], raw_value: bytes, base: dict | None = None) -> bytes:
    """`base` (as JSON) with each of `props` set to the same raw JSON text, which may be hostile."""
    names = props or ["x"]
    members = [json.dumps(k).encode() + b":" + json.dumps(v).encode() for k, v in (base or {}).items()
               if k not in names]
    members += [json.dumps(p).encode() + b":" + raw_value for p in names]
    return b"{" + b",".join(members) + b"}"


def _hostile_bodies(path: str, props: list[str]) -> list[tuple[str, bytes, str | None, bool]]:
    """(name, body, content-type, must_be_4xx): a lenient case may also succeed, but never 5xx."""
    json_ct = "application/json"
    base = VALID_BODIES.get(path, {})
    valid = json.dumps(base).encode()
    return [
        ("empty JSON array", b"[]", json_ct, True),
        ("JSON array of objects", b"[{}, {}]", json_ct, True),
        ("JSON string", b'"hello"', json_ct, True),
        ("JSON null", b"null", json_ct, True),
        ("bare huge number 1e400", b"1e400", json_ct, True),
        (f"array nested {DEPTH} deep", deep_array(DEPTH), json_ct, True),
        (f"object nested {DEPTH} deep", deep_object(DEPTH), json_ct, False),
        ("every property 1e400", _object_with(props, b"1e400"), json_ct, True),
        ("every property -1e400", _object_with(props, b"-1e400"), json_ct, True),
        ("every property a 5000-digit integer", _object_with(props, HUGE_INT), json_ct, True),
        ("invalid UTF-8 in a string", _object_with(props, b'"\xff\xfe\xc3\x28"'), json_ct, True),
        ("invalid UTF-8 outside strings", b"\xff\xfe{}", json_ct, True),
        ("empty body", b"", json_ct, True),
        ("empty body, no content-type", b"", None, True),
        ("truncated JSON", valid[:-1], json_ct, True),
        ("valid body as text/plain", valid, "text/plain", True),
        ("valid body as form data", valid, "application/x-www-form-urlencoded", True),
        ("form data", b"model=x&name=y", "application/x-www-form-urlencoded", True),
        ("valid body as multipart", valid, "multipart/form-data; boundary=xyz", True),
    ] + [
        # One property of an otherwise valid body at a time, so that free-form fields (payloads, metadata)
        # carry the value past validation. 300 levels parse in Python but exceed orjson's 254-level limit.
        (f"valid body with {prop!r} {what}", _object_with([prop], raw, base), json_ct, False)
        for prop in props
        for what, raw in (
            *((f"an object nested {d} deep", deep_object(d)) for d in (300, DEPTH)),
            *((f"an array nested {d} deep", deep_array(d)) for d in (300, DEPTH)),
            ("1e400", b"1e400"),
            ("a 5000-digit integer", HUGE_INT),
            # Past the int32/int64 fields a value may be copied into on its way to a store.
            ("2**31", str(2**31).encode()),
            ("2**63", str(2**63).encode()),
            ("2**64", str(2**64).encode()),
            ("-(2**63) - 1", str(-(2**63) - 1).encode()),
        )
    ]


def test_hostile_bodies_on_every_post_route(stack, fuzz_key: str) -> None:
    spec = httpx.get(f"{stack.url}/openapi.json", timeout=30).json()
    routes = _post_routes(spec)
    assert len(routes) >= 5, routes
    problems: dict[str, list[str]] = {}  # "route -> what came back": the bodies that got it

    def note(path: str, outcome: str, name: str) -> None:
        problems.setdefault(f"POST {path} -> {outcome}", []).append(name)

    # No keep-alive: a connection the server drops after one failure must not blame the next request.
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=stack.url, timeout=REQUEST_TIMEOUT_S, limits=limits) as client:
        for path, props in routes:
            auth = auth_for(path, stack, fuzz_key)
            if path in VALID_BODIES:  # the control: only the content-type makes the variants below wrong
                resp = client.post(path, json=VALID_BODIES[path], headers=auth)
                if not 200 <= resp.status_code < 300:
                    note(path, f"{resp.status_code} {resp.text[:200]}", "the valid body (control)")
            for name, body, content_type, must_be_4xx in _hostile_bodies(path, props):
                headers = dict(auth)
                if content_type is not None:
                    headers["content-type"] = content_type
                try:
                    resp = client.post(path, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    note(path, f"no response ({type(exc).__name__}: {exc})", name)
                    continue
                status = resp.status_code
                if status >= 500:
                    note(path, f"{status}, want 4xx; body {resp.content[:200]!r}", name)
                elif must_be_4xx and not 400 <= status < 500:
                    note(path, f"{status} (accepted), want 4xx", name)
                elif 400 <= status < 500 and (problem := error_body_problem(status, resp.content)):
                    note(path, problem, name)
    assert not problems, (
        f"{len(problems)} problem(s); stack data dir: {stack.data_dir}\n"
        + "\n".join(f"{outcome}\n    for: {'; '.join(names)}" for outcome, names in problems.items())
        + "\n\n" + server_tracebacks(stack.data_dir)
    )
