"""A deterministic fake of the OpenAI and Anthropic HTTP APIs: the upstream of every test and benchmark.

Why a fake: Refinery is a proxy and logger, so what must be real is the *wire*, not the model. This
server speaks the real formats (JSON bodies, SSE chunk sequences, error bodies and statuses) closely
enough that the official `openai`, `anthropic` and `openpipe` SDKs parse and merge everything it
sends, while the answers are a pure function of the request, so tests can assert exact values.

Why these particular behaviours:

* Answers echo the last user message (``"Echo: <text>"``) so a test can tell which request an
  answer belongs to, and a cache hit from a miss.
* The delay (``--delay-ms``, or per request ``x-fake-delay-ms``) is spent *before any response
  header*, streams included: client timeout tests (the openpipe SDK's use 0.1 s) must see no byte
  before it, and benchmarks set it to model a slow upstream or to 0 to measure pure overhead.
* Magic model names produce the upstream errors that pass-through tests need: ``gpt-4o-error`` and
  ``claude-error`` (404), ``fail-500`` and ``fail-429``.
* Magic model names also produce the broken answers the proxy must still log: ``claude-stream-cut``
  streams the answer but stops before ``message_delta``/``message_stop``; ``claude-stream-hangup``
  and ``gpt-4o-stream-hangup`` send the first frames of the stream, then drop the connection
  mid-body; ``claude-stream-overloaded`` sends Anthropic's mid-stream ``error`` event;
  ``claude-array-200`` answers a plain request 200 with a JSON array instead of a message.
* A request that forces the tool ``record_judgement`` (a criterion's LLM judge) gets a verdict that is
  a pure function of the prompt, so criteria tests can predict every judgement: when the system
  prompt says ``fails if the output contains "X"`` (any case, double quotes), ``passed`` is whether X
  does not occur (any case) between the ``<output>`` and ``</output>`` lines of the last user
  message; when it says ``fails unless the output contains "X"``, ``passed`` is whether X does occur
  there; otherwise ``passed`` is true. ``explanation`` says which (``The output contains "X".``). When
  the prompt also says ``a pass scores N`` (N from 0.5 to 1), the verdict carries ``score``: N for a
  pass, 1 - N for a fail.
  Both routes do it: OpenAI's forced ``tool_choice`` and Anthropic's ``{"type": "tool"}``.
* A request that forces the tool ``record_comparison`` (a head-to-head eval's judge) gets a verdict
  ``{"winner": "A" | "B" | "tie", "explanation"}`` that is a pure function of the prompt too, read from
  the ``<output_a>...</output_a>`` and ``<output_b>...</output_b>`` parts of the last user message: when
  the system prompt says ``always prefer output A`` (any case) the winner is always ``A``, a judge with
  position bias that only asking in both orders can expose; when it says ``prefer the output that
  contains "X"`` (any case, double quotes) the winner is the one output containing X (any case), a tie
  when both or neither do; otherwise a tie. Both routes, as for ``record_judgement``.
* ``GET /fake/stats`` / ``POST /fake/reset`` count the requests that reached the upstream, so a test
  can prove a cache hit never left the proxy.
* It never crashes and never logs per request: every failure becomes a JSON error body, and
  benchmarks drive it at hundreds of requests per second.

Run it standalone (stops cleanly, exit code 0, on SIGTERM or SIGINT)::

    python -m tests.fakes.upstream --host 127.0.0.1 --port P [--delay-ms N] [--api-key KEY ...]

or in process with :func:`build_app`. ``--port 0`` picks a free port; the announced line
(``fake-upstream listening on http://HOST:PORT``) carries the real one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import re
import signal
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

__all__ = ["DEFAULT_API_KEYS", "DEFAULT_DELAY_MS", "MODELS", "build_app", "main"]

DEFAULT_DELAY_MS = 300.0
DEFAULT_API_KEYS: tuple[str, ...] = ("sk-fake", "ak-fake")
MODELS: tuple[str, ...] = ("gpt-4o", "gpt-4o-mini", "gpt-4o-2024-08-06", "o1")

NOT_FOUND_MODELS = frozenset({"gpt-4o-error", "claude-error"})
STREAM_CUT_MODEL = "claude-stream-cut"
STREAM_HANGUP_MODELS = frozenset({"claude-stream-hangup", "gpt-4o-stream-hangup"})
STREAM_OVERLOADED_MODEL = "claude-stream-overloaded"
ARRAY_200_MODEL = "claude-array-200"
HANGUP_AFTER_FRAMES = 4
JUDGE_TOOL = "record_judgement"
_FAILS_IF = re.compile(r'fails if the output contains "([^"]+)"', re.IGNORECASE)
_FAILS_UNLESS = re.compile(r'fails unless the output contains "([^"]+)"', re.IGNORECASE)
_PASS_SCORES = re.compile(r"a pass scores (0\.[5-9][0-9]*|1(?:\.0+)?)\b", re.IGNORECASE)
COMPARE_TOOL = "record_comparison"
_PREFERS = re.compile(r'prefer the output that contains "([^"]+)"', re.IGNORECASE)
_ALWAYS_A = re.compile(r"always prefer output A", re.IGNORECASE)
DELAY_HEADER = "x-fake-delay-ms"
MAX_DELAY_MS = 600_000.0  # a typo in a header must not park a connection for hours
MAX_CHOICES = 128  # the real API's limit; also bounds the work one request can cause
MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_SCHEMA_DEPTH = 32  # recursive $refs must terminate

_WORDS = re.compile(r"\S+\s*|\s+")
# Unique across restarts too: a per-process random prefix, then a counter (24 hex digits in all).
_PREFIX = os.urandom(4).hex()
_COUNTER = itertools.count(1)


def _hex24() -> str:
    return f"{_PREFIX}{next(_COUNTER):016x}"


def _dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


# --------------------------------------------------------------------------------------------------
# Errors: one exception type, rendered in the dialect of the route that raised it.
# --------------------------------------------------------------------------------------------------


class ApiError(Exception):
    """An error that becomes an HTTP error response, shaped like the API the route imitates."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        openai_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.openai_type = openai_type or ("server_error" if status >= 500 else "invalid_request_error")
        self.headers = headers or {}


_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def _is_anthropic(request: web.Request) -> bool:
    return request.path.startswith("/v1/messages")


def _error_response(request: web.Request, err: ApiError) -> web.Response:
    """Render in the dialect of the route: the SDKs parse these bodies into their exception types."""
    if _is_anthropic(request):
        kind = _ANTHROPIC_TYPES.get(err.status, "api_error" if err.status >= 500 else "invalid_request_error")
        body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": err.message}}
    else:
        body = {"error": {"message": err.message, "type": err.openai_type, "param": err.param, "code": err.code}}
    headers = {"x-request-id": "req_" + _hex24(), **err.headers}
    return web.Response(status=err.status, body=_dumps(body), content_type="application/json", headers=headers)


def _special_model_error(model: str) -> ApiError | None:
    """The magic model names that make the fake fail the way the real upstream does."""
    if model in NOT_FOUND_MODELS:
        return ApiError(
            404, f"The model `{model}` does not exist or you do not have access to it.", code="model_not_found"
        )
    if model == "fail-500":
        return ApiError(500, "The server had an error while processing your request.", code="server_error")
    if model == "fail-429":
        # A short retry hint keeps SDK retries (on by default) from slowing error pass-through tests.
        return ApiError(
            429,
            f"Rate limit reached for {model}: requests per min (RPM): Limit 1, Used 1, Requested 1.",
            code="rate_limit_exceeded",
            openai_type="requests",
            headers={"retry-after-ms": "10"},
        )
    return None


# --------------------------------------------------------------------------------------------------
# Deterministic content.
# --------------------------------------------------------------------------------------------------


def _text_of(content: Any) -> str:
    """Text of a message's content: a string, or a list of parts of which the text ones count."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return " ".join(texts)
    return ""


def _last_user_text(messages: list[Any]) -> str:
    """The text the answer echoes: the last user message's, else the last message's, else "Hello"."""
    dicts = [m for m in messages if isinstance(m, dict)]
    for msg in reversed(dicts):
        if msg.get("role") == "user":
            return _text_of(msg.get("content"))
    if dicts:
        return _text_of(dicts[-1].get("content")) or "Hello"
    return "Hello"


def _count_words(text: str | None) -> int:
    return len(text.split()) if text else 0


def _prompt_tokens(messages: list[Any], system: Any = None) -> int:
    """Deterministic 'tokens': words of every message's text plus 4 per message (the framing)."""
    words = sum(_count_words(_text_of(m.get("content"))) for m in messages if isinstance(m, dict))
    return words + 4 * len(messages) + _count_words(_text_of(system))


def _truncate(text: str, limit: Any) -> tuple[str, bool]:
    """Cut to `limit` words, as a model stopped by max_tokens would; says whether it cut."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        return text, False
    words = text.split()
    if len(words) <= limit:
        return text, False
    return " ".join(words[:limit]), True


def _resolve(schema: Any, root: dict[str, Any]) -> Any:
    """Follow a local `$ref` (`#/$defs/X`), as pydantic-generated schemas for nested models use."""
    seen = 0
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and seen < MAX_SCHEMA_DEPTH:
        ref: str = schema["$ref"]
        if not ref.startswith("#"):
            return {}
        node: Any = root
        for part in ref.lstrip("#").strip("/").split("/"):
            if not part:
                continue
            part = part.replace("~1", "/").replace("~0", "~")
            node = node.get(part) if isinstance(node, dict) else None
        schema = node if isinstance(node, dict) else {}
        seen += 1
    return schema


def _value_for(name: str, schema: Any, root: dict[str, Any], depth: int = 0) -> Any:
    """A fixed value of the schema's type, so tool arguments and structured outputs are predictable."""
    schema = _resolve(schema, root)
    if not isinstance(schema, dict) or depth > MAX_SCHEMA_DEPTH:
        return "value"
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    for combinator in ("anyOf", "oneOf", "allOf"):
        options = schema.get(combinator)
        if isinstance(options, list) and options:
            non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return _value_for(name, (non_null or options)[0], root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "string":
        return "San Francisco, CA" if "location" in name.lower() else "value"
    if kind in ("number", "integer"):
        return 1
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        return _object_for(schema, root, depth + 1)
    if kind == "null":
        return None
    return "value"


def _object_for(schema: Any, root: dict[str, Any] | None = None, depth: int = 0) -> dict[str, Any]:
    """An object with a value for each required property (all properties when none is required)."""
    if root is None:
        root = schema if isinstance(schema, dict) else {}
    schema = _resolve(schema, root)
    if not isinstance(schema, dict) or depth > MAX_SCHEMA_DEPTH:
        return {}
    props = schema.get("properties")
    props = props if isinstance(props, dict) else {}
    required = schema.get("required")
    names = [n for n in required if isinstance(n, str)] if isinstance(required, list) and required else list(props)
    return {n: _value_for(n, props.get(n, {}), root, depth) for n in names}


def _output_block(text: str) -> str:
    """The lines between the ``<output>`` line and the last ``</output>`` line (empty without them)."""
    lines = text.split("\n")
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "<output>")
        end = max(i for i, line in enumerate(lines) if line.strip() == "</output>" and i > start)
    except (StopIteration, ValueError):
        return ""
    return "\n".join(lines[start + 1:end])


def _judge_verdict(system: str, last_user: str) -> dict[str, Any]:
    """The judge's deterministic verdict (see the module docstring)."""
    rule = _FAILS_IF.search(system)
    match = rule or _FAILS_UNLESS.search(system)
    if match is None:
        verdict: dict[str, Any] = {"explanation": "No failing condition applies to the output.", "passed": True}
    else:
        word = match.group(1)
        contains = word.lower() in _output_block(last_user).lower()
        explanation = f'The output contains "{word}".' if contains else f'The output does not contain "{word}".'
        verdict = {"explanation": explanation, "passed": contains != (rule is not None)}
    graded = _PASS_SCORES.search(system)
    if graded is not None:
        verdict["score"] = round(float(graded.group(1)) if verdict["passed"] else 1 - float(graded.group(1)), 6)
    return verdict


def _tagged(text: str, tag: str) -> str | None:
    """The text between ``<tag>`` and the next ``</tag>``, or None when the message has no such part."""
    match = re.search(f"<{tag}>(.*?)</{tag}>", text, re.DOTALL)
    return match.group(1) if match is not None else None


def _comparison_verdict(system: str, last_user: str) -> dict[str, Any]:
    """The head-to-head judge's deterministic verdict (see the module docstring)."""
    if _ALWAYS_A.search(system):
        return {"winner": "A", "explanation": "Output A is always preferred."}
    rule = _PREFERS.search(system)
    if rule is None:
        return {"winner": "tie", "explanation": "No preference applies to the outputs."}
    word = rule.group(1)
    has = [word.lower() in (_tagged(last_user, tag) or "").lower() for tag in ("output_a", "output_b")]
    if has == [True, False]:
        return {"winner": "A", "explanation": f'Only output A contains "{word}".'}
    if has == [False, True]:
        return {"winner": "B", "explanation": f'Only output B contains "{word}".'}
    both = "Both outputs contain" if has[0] else "Neither output contains"
    return {"winner": "tie", "explanation": f'{both} "{word}".'}


def _openai_judge_texts(messages: list[Any]) -> tuple[str, str]:
    """(system prompt, last user message) of an OpenAI conversation."""
    dicts = [m for m in messages if isinstance(m, dict)]
    system = "\n".join(_text_of(m.get("content")) for m in dicts if m.get("role") in ("system", "developer"))
    users = [_text_of(m.get("content")) for m in dicts if m.get("role") == "user"]
    return system, users[-1] if users else ""


def _anthropic_judge_texts(body: dict[str, Any], messages: list[Any]) -> tuple[str, str]:
    """(system prompt, last user message) of an Anthropic request."""
    system = body.get("system")
    system_text = system if isinstance(system, str) else _text_of(system)
    users = [_text_of(m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return system_text, users[-1] if users else ""


def _pieces(text: str, parts: int) -> list[str]:
    """Split into `parts` non-empty pieces (fewer if too short) that concatenate back to `text`."""
    parts = max(1, min(parts, len(text)))
    bounds = [len(text) * i // parts for i in range(parts + 1)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)] or [text]


def _argument_pieces(args: str) -> list[str]:
    """2 to 4 pieces, as real streams cut tool arguments mid-token."""
    return _pieces(args, 2 if len(args) < 16 else 3 if len(args) < 48 else 4)


def _word_pieces(text: str) -> list[str]:
    """One word with its following whitespace per piece; they concatenate back to `text` exactly."""
    return _WORDS.findall(text)


# --------------------------------------------------------------------------------------------------
# Request plumbing.
# --------------------------------------------------------------------------------------------------


@dataclass
class _State:
    delay_ms: float
    api_keys: frozenset[str]
    requests: int = 0
    closing: bool = False
    sleepers: set[asyncio.Future[None]] = field(default_factory=set)

    async def sleep(self, seconds: float) -> None:
        """A delay that shutdown cuts short, so SIGTERM never waits on a benchmark's long delays."""
        if self.closing:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(seconds, _wake, waiter)
        self.sleepers.add(waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self.sleepers.discard(waiter)

    def wake_all(self) -> None:
        self.closing = True
        for waiter in list(self.sleepers):
            _wake(waiter)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


_STATS_KEY = web.AppKey("fake_upstream_state", _State)


def _state(request: web.Request) -> _State:
    return request.app[_STATS_KEY]


def _delay_seconds(request: web.Request, default_ms: float) -> float:
    raw = request.headers.get(DELAY_HEADER)
    ms = default_ms
    if raw is not None:
        try:
            ms = float(raw)
        except ValueError:
            ms = default_ms
    if not math.isfinite(ms) or ms <= 0:
        return 0.0
    return min(ms, MAX_DELAY_MS) / 1000.0


def _presented_key(request: web.Request, anthropic: bool) -> str | None:
    """The key the client sent: each API's own header first, the other accepted as well."""
    auth = request.headers.get("authorization", "")
    bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else None
    x_api_key = request.headers.get("x-api-key")
    first, second = (x_api_key, bearer) if anthropic else (bearer, x_api_key)
    return first if first is not None else second


def _authenticate(request: web.Request) -> None:
    anthropic = _is_anthropic(request)
    key = _presented_key(request, anthropic)
    if key is not None and key in _state(request).api_keys:
        return
    if anthropic:
        raise ApiError(401, "invalid x-api-key")
    if not key:
        raise ApiError(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization header using "
            "Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            code="invalid_api_key",
        )
    raise ApiError(401, f"Incorrect API key provided: {key}.", code="invalid_api_key")


async def _json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(
            400,
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
            "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
            code="invalid_json",
        ) from None
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid request body: expected a JSON object.", code="invalid_type")
    return body


def _required_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if model is None:
        raise ApiError(400, "Missing required parameter: 'model'.", code="missing_required_parameter", param="model")
    if not isinstance(model, str):
        raise ApiError(400, "Invalid type for 'model': expected a string.", code="invalid_type", param="model")
    err = _special_model_error(model)
    if err is not None:
        raise err
    return model


def _required_messages(body: dict[str, Any]) -> list[Any]:
    messages = body.get("messages")
    if messages is None:
        raise ApiError(
            400, "Missing required parameter: 'messages'.", code="missing_required_parameter", param="messages"
        )
    if not isinstance(messages, list):
        raise ApiError(400, "Invalid type for 'messages': expected an array.", code="invalid_type", param="messages")
    return messages


def _json_response(obj: Any) -> web.Response:
    return web.Response(
        body=_dumps(obj), content_type="application/json", headers={"x-request-id": "req_" + _hex24()}
    )


async def _sse(request: web.Request, frames: Iterable[bytes]) -> web.StreamResponse:
    """Send pre-built SSE frames, one write each so clients see a real incremental stream."""
    resp = web.StreamResponse(
        status=200,
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "x-request-id": "req_" + _hex24()},
    )
    # A client that hangs up mid-stream is normal (timeouts, benchmarks); it must not surface as an error.
    with contextlib.suppress(ConnectionError):
        await resp.prepare(request)
        for frame in frames:
            await resp.write(frame)
        await resp.write_eof()
    return resp


async def _sse_then_hang_up(request: web.Request, frames: Iterable[bytes]) -> web.StreamResponse:
    """The first frames of a stream, then the connection dropped with the body unfinished (no last
    chunk), as an upstream that dies mid-answer leaves it."""
    resp = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    with contextlib.suppress(ConnectionError):
        await resp.prepare(request)
        for frame in itertools.islice(frames, HANGUP_AFTER_FRAMES):
            await resp.write(frame)
    if request.transport is not None:
        request.transport.close()  # sends what was written, then closes: the body never ends
    return resp


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count, delay, authenticate, and turn every failure into a JSON error: the fake never crashes."""
    api = request.path.startswith("/v1/")
    try:
        if api:
            state = _state(request)
            state.requests += 1
            delay = _delay_seconds(request, state.delay_ms)
            if delay:
                await state.sleep(delay)  # before any byte of the response, streams included
            _authenticate(request)
        return await handler(request)
    except ApiError as err:
        return _error_response(request, err)
    except web.HTTPException as exc:  # no such route (404), wrong method (405), body too large (413)
        if exc.status < 400:
            raise
        reason = exc.reason or "Error"
        message = f"Invalid URL ({request.method} {request.path})" if exc.status == 404 else reason
        return _error_response(request, ApiError(exc.status, message, code=None))
    except Exception as exc:  # the contract is "never crash": report the failure, keep serving
        return _error_response(
            request, ApiError(500, f"The fake upstream failed: {type(exc).__name__}: {exc}", code="server_error")
        )


# --------------------------------------------------------------------------------------------------
# OpenAI: chat completions.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Call:
    """A function the model 'decides' to call: the forced one, else the first offered."""

    name: str
    arguments: str


def _pick_function(functions: list[dict[str, Any]], forced: str | None) -> _Call:
    chosen = functions[0]
    if forced is not None:
        chosen = next((f for f in functions if f.get("name") == forced), {"name": forced, "parameters": {}})
    arguments = _dumps(_object_for(chosen.get("parameters") or {})).decode()
    return _Call(str(chosen.get("name")), arguments)


def _tool_call(body: dict[str, Any]) -> _Call | None:
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not isinstance(tools, list) or choice == "none":
        return None
    functions = [
        t["function"]
        for t in tools
        if isinstance(t, dict) and isinstance(t.get("function"), dict) and isinstance(t["function"].get("name"), str)
    ]
    if not functions:
        return None
    forced = None
    if isinstance(choice, dict):
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else choice.get("name")
        forced = name if isinstance(name, str) else None
    if forced == JUDGE_TOOL:
        system, last_user = _openai_judge_texts(_required_messages(body))
        return _Call(JUDGE_TOOL, _dumps(_judge_verdict(system, last_user)).decode())
    if forced == COMPARE_TOOL:
        system, last_user = _openai_judge_texts(_required_messages(body))
        return _Call(COMPARE_TOOL, _dumps(_comparison_verdict(system, last_user)).decode())
    return _pick_function(functions, forced)


def _function_call(body: dict[str, Any]) -> _Call | None:
    functions = body.get("functions")
    choice = body.get("function_call")
    if not isinstance(functions, list) or choice == "none":
        return None
    valid = [f for f in functions if isinstance(f, dict) and isinstance(f.get("name"), str)]
    if not valid:
        return None
    forced = choice.get("name") if isinstance(choice, dict) and isinstance(choice.get("name"), str) else None
    return _pick_function(valid, forced)


def _choice_count(body: dict[str, Any]) -> int:
    n = body.get("n")
    if n is None:
        return 1
    if isinstance(n, bool) or not isinstance(n, int):
        raise ApiError(400, "Invalid type for 'n': expected an integer.", code="invalid_type", param="n")
    if not 1 <= n <= MAX_CHOICES:
        raise ApiError(
            400, f"Invalid 'n': must be between 1 and {MAX_CHOICES}, got {n}.", code="invalid_value", param="n"
        )
    return n


def _content(body: dict[str, Any], messages: list[Any], index: int) -> tuple[str, str]:
    """The text answer of choice `index` and its finish reason."""
    fmt = body.get("response_format")
    fmt_type = fmt.get("type") if isinstance(fmt, dict) else None
    if fmt_type == "json_schema":
        spec = fmt.get("json_schema") if isinstance(fmt, dict) else None
        schema = spec.get("schema") if isinstance(spec, dict) else None
        # Spaced like real model output, so streaming and max_tokens cut JSON into words too.
        text = json.dumps(_object_for(schema if isinstance(schema, dict) else {}), ensure_ascii=False)
    elif fmt_type == "json_object":
        text = json.dumps({"echo": _last_user_text(messages)}, ensure_ascii=False)
    else:
        text = "Echo: " + _last_user_text(messages)
        if index:  # JSON answers stay parseable; plain ones say which choice they are
            text += f" (choice {index})"
    limit = body.get("max_completion_tokens")
    if limit is None:
        limit = body.get("max_tokens")
    text, cut = _truncate(text, limit)
    return text, "length" if cut else "stop"


def _completion(body: dict[str, Any], model: str, messages: list[Any]) -> dict[str, Any]:
    n = _choice_count(body)
    tool = _tool_call(body)
    function = None if tool is not None else _function_call(body)
    choices: list[dict[str, Any]] = []
    completion_tokens = 0
    for index in range(n):
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
        if tool is not None:
            call_id = "call_" + _hex24()
            message["tool_calls"] = [
                {"id": call_id, "type": "function", "function": {"name": tool.name, "arguments": tool.arguments}}
            ]
            finish = "tool_calls"
            completion_tokens += max(1, _count_words(tool.arguments))
        elif function is not None:
            message["function_call"] = {"name": function.name, "arguments": function.arguments}
            finish = "function_call"
            completion_tokens += max(1, _count_words(function.arguments))
        else:
            message["content"], finish = _content(body, messages, index)
            completion_tokens += _count_words(message["content"])
        choices.append({"index": index, "message": message, "logprobs": None, "finish_reason": finish})
    prompt_tokens = _prompt_tokens(messages)
    return {
        "id": "chatcmpl-" + _hex24(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _chunk_frames(completion: dict[str, Any], include_usage: bool) -> Iterator[bytes]:
    """The chunk sequence of the real API, in the shapes openpipe's `merge_openai_chunks` relies on."""
    base = {
        "id": completion["id"],
        "object": "chat.completion.chunk",
        "created": completion["created"],
        "model": completion["model"],
        "system_fingerprint": completion["system_fingerprint"],
    }
    if include_usage:
        base["usage"] = None

    def frame(index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return b"data: " + _dumps({**base, "choices": [choice]}) + b"\n\n"

    for choice in completion["choices"]:
        index, message = choice["index"], choice["message"]
        if "tool_calls" in message:
            call = message["tool_calls"][0]
            head = {"index": 0, "id": call["id"], "type": "function",
                    "function": {"name": call["function"]["name"], "arguments": ""}}
            yield frame(index, {"role": "assistant", "content": None, "tool_calls": [head], "refusal": None})
            for piece in _argument_pieces(call["function"]["arguments"]):
                yield frame(index, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
        elif "function_call" in message:
            fc = message["function_call"]
            # The first chunk must carry the call: the SDK's merger cannot start one later.
            head = {"name": fc["name"], "arguments": ""}
            yield frame(index, {"role": "assistant", "content": None, "function_call": head, "refusal": None})
            for piece in _argument_pieces(fc["arguments"]):
                yield frame(index, {"function_call": {"arguments": piece}})
        else:
            yield frame(index, {"role": "assistant", "content": "", "refusal": None})
            for piece in _word_pieces(message["content"] or ""):
                yield frame(index, {"content": piece})
        yield frame(index, {}, choice["finish_reason"])
    if include_usage:
        yield b"data: " + _dumps({**base, "choices": [], "usage": completion["usage"]}) + b"\n\n"
    yield b"data: [DONE]\n\n"


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """POST /v1/chat/completions: tolerant of unknown keys, strict about `model` and `messages`."""
    body = await _json_body(request)
    model = _required_model(body)
    messages = _required_messages(body)
    completion = _completion(body, model, messages)
    if body.get("stream") is True:
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        if model in STREAM_HANGUP_MODELS:
            return await _sse_then_hang_up(request, _chunk_frames(completion, include_usage))
        return await _sse(request, _chunk_frames(completion, include_usage))
    return _json_response(completion)


async def list_models(request: web.Request) -> web.Response:
    """GET /v1/models: enough for clients that probe the upstream."""
    return _json_response({"object": "list", "data": [_model_object(m) for m in MODELS]})


async def retrieve_model(request: web.Request) -> web.Response:
    """GET /v1/models/{model}: every name exists but the magic failing ones."""
    model = request.match_info["model"]
    err = _special_model_error(model)
    if err is not None:
        raise err
    return _json_response(_model_object(model))


def _model_object(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": 1_700_000_000, "owned_by": "openai"}


# --------------------------------------------------------------------------------------------------
# Anthropic: messages.
# --------------------------------------------------------------------------------------------------


def _anthropic_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not isinstance(tools, list) or (isinstance(choice, dict) and choice.get("type") == "none"):
        return None
    valid = [t for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str)]
    if not valid:
        return None
    chosen = valid[0]
    forced = isinstance(choice, dict) and choice.get("type") == "tool" and isinstance(choice.get("name"), str)
    if forced:
        chosen = next((t for t in valid if t["name"] == choice["name"]), {"name": choice["name"]})
    if forced and chosen["name"] == JUDGE_TOOL:
        arguments = _judge_verdict(*_anthropic_judge_texts(body, _required_messages(body)))
    elif forced and chosen["name"] == COMPARE_TOOL:
        arguments = _comparison_verdict(*_anthropic_judge_texts(body, _required_messages(body)))
    else:
        arguments = _object_for(chosen.get("input_schema") or {})
    return {"type": "tool_use", "id": "toolu_" + _hex24(), "name": chosen["name"], "input": arguments}


def _anthropic_message(body: dict[str, Any], model: str, messages: list[Any]) -> dict[str, Any]:
    tool = _anthropic_tool(body)
    if tool is not None:
        content: list[dict[str, Any]] = [tool]
        stop = "tool_use"
        output_tokens = max(1, _count_words(_dumps(tool["input"]).decode()))
    else:
        text, cut = _truncate("Echo: " + _last_user_text(messages), body.get("max_tokens"))
        content = [{"type": "text", "text": text}]
        stop = "max_tokens" if cut else "end_turn"
        output_tokens = _count_words(text)
    return {
        "id": "msg_" + _hex24(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": _prompt_tokens(messages, body.get("system")), "output_tokens": output_tokens},
    }


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + _dumps(data) + b"\n\n"


def _anthropic_frames(message: dict[str, Any]) -> Iterator[bytes]:
    """The real Messages streaming sequence, with `event:` lines as the Anthropic SDK expects."""
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None,
             "usage": {"input_tokens": message["usage"]["input_tokens"], "output_tokens": 1}}
    yield _event("message_start", {"type": "message_start", "message": start})
    for index, block in enumerate(message["content"]):
        if block["type"] == "tool_use":
            opening = {**block, "input": {}}
            pieces = _argument_pieces(_dumps(block["input"]).decode())
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces]
        else:
            opening = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in _word_pieces(block["text"])]
        yield _event("content_block_start", {"type": "content_block_start", "index": index, "content_block": opening})
        if index == 0:
            yield _event("ping", {"type": "ping"})
        for delta in deltas:
            yield _event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
        yield _event("content_block_stop", {"type": "content_block_stop", "index": index})
    yield _event("message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
        "usage": {"output_tokens": message["usage"]["output_tokens"]},
    })
    yield _event("message_stop", {"type": "message_stop"})


async def anthropic_messages(request: web.Request) -> web.StreamResponse:
    """POST /v1/messages: the Anthropic Messages API, plain and streamed."""
    body = await _json_body(request)
    model = _required_model(body)
    messages = _required_messages(body)
    message = _anthropic_message(body, model, messages)
    if body.get("stream") is True:
        frames = list(_anthropic_frames(message))
        if model == STREAM_CUT_MODEL:
            return await _sse(request, frames[:-2])  # no message_delta, no message_stop
        if model == STREAM_OVERLOADED_MODEL:
            overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
            return await _sse(request, [*frames[:3], _event("error", overloaded)])
        if model in STREAM_HANGUP_MODELS:
            return await _sse_then_hang_up(request, frames)
        return await _sse(request, frames)
    if model == ARRAY_200_MODEL:
        return _json_response([message])
    return _json_response(message)


# --------------------------------------------------------------------------------------------------
# Test hooks and the app.
# --------------------------------------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def stats(request: web.Request) -> web.Response:
    """How many API requests reached the fake since start or the last reset."""
    return web.Response(body=_dumps({"requests": _state(request).requests}), content_type="application/json")


async def reset(request: web.Request) -> web.Response:
    _state(request).requests = 0
    return web.Response(body=_dumps({"requests": 0}), content_type="application/json")


def build_app(delay_ms: float = DEFAULT_DELAY_MS, api_keys: tuple[str, ...] = DEFAULT_API_KEYS) -> web.Application:
    """The fake as an aiohttp application, for in-process servers (`aiohttp.test_utils.TestServer`)."""
    app = web.Application(middlewares=[_guard], client_max_size=MAX_BODY_BYTES)
    app[_STATS_KEY] = _State(delay_ms=float(delay_ms), api_keys=frozenset(api_keys))
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/messages", anthropic_messages)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model}", retrieve_model)
    app.router.add_get("/health", health)
    app.router.add_get("/fake/stats", stats)
    app.router.add_post("/fake/reset", reset)
    app.on_shutdown.append(_on_shutdown)
    return app


async def _on_shutdown(app: web.Application) -> None:
    """Answer delayed requests now instead of holding the shutdown for up to their whole delay."""
    app[_STATS_KEY].wake_all()


async def _serve(host: str, port: int, delay_ms: float, api_keys: tuple[str, ...]) -> None:
    # Signal handlers first: once the line is printed, a supervisor's SIGTERM must mean a clean exit.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(build_app(delay_ms, api_keys), access_log=None, handle_signals=False, shutdown_timeout=2)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=2048, reuse_address=True)
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port
        print(f"fake-upstream listening on http://{host}:{bound}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed: the benchmarks' upstream must not be their bottleneck."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.upstream", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port (announced on stdout)")
    parser.add_argument("--delay-ms", type=float, default=DEFAULT_DELAY_MS,
                        help=f"delay before any response byte; per request: header {DELAY_HEADER}")
    parser.add_argument("--api-key", action="append", dest="api_keys", metavar="KEY",
                        help=f"accepted key (repeatable); default: {' '.join(DEFAULT_API_KEYS)}")
    args = parser.parse_args(argv)
    keys = tuple(args.api_keys) if args.api_keys else DEFAULT_API_KEYS
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_serve(args.host, args.port, args.delay_ms, keys))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
