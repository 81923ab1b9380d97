"""`op-criteria`: every choice of a completion judged by criteria, and the choices ranked (best of N).

The header (the SDK's `openpipe={"criteria": [...]}` sends the same) is a JSON array of `name` or
`name@vN`. A call that carries it goes:
1. before the upstream is called, criteria-judge resolves the list, so an unknown criterion or
   version is a 404 with the service's words ("Criterion x not found") and costs no completion;
2. after the upstream answered 200, criteria-judge judges every choice by every criterion
   (concurrently, on its side); each choice gets `criteria_results` keyed by the name without
   version, the choices are sorted by combined score (the sum of the successful scores), highest
   first and stable, and renumbered; the usage gains the judging tokens, also shown apart under
   `usage.criteria`.
A judge that fails gives that result `status: "error"`, and criteria-judge failing or unreachable as
a whole gives every result that status: the completion itself succeeded, so the call is a 200.

Judging needs whole choices, so a stream with criteria is refused (400). Calls without the header
never reach this module.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import grpc
import orjson
from refinery.grpc_server import client_channel
from refinery.rpc import criteria_pb2, criteria_pb2_grpc

from proxy_router.errors import ProxyError

log = logging.getLogger("refinery.proxy_router")

HEADER = "op-criteria"
MAX_CRITERIA = 20
MAX_REF_CHARS = 200
RESOLVE_DEADLINE_S = 10.0
NOT_CONFIGURED = "op-criteria needs criteria-judge, and this proxy-router has none configured (REFINERY_CRITERIA_GRPC)"
_SHAPE = f"`{HEADER}` header must be a JSON array of criterion names (`name` or `name@vN`)"

# errorCode is a number in the SDK's types: the HTTP status that says what went wrong, from
# criteria-judge's result codes (`JUDGE_TIMEOUT`, ...: read without the prefix) and gRPC's status names.
_ERROR_CODES = {
    "TIMEOUT": 504, "DEADLINE_EXCEEDED": 504,  # the judge did not answer in time
    "UNAVAILABLE": 503, "UNREACHABLE": 503,  # the judge, or a service it needs, could not be reached
    "FAILED": 502, "INVALID_VERDICT": 502, "UPSTREAM": 502, "BAD_VERDICT": 502,  # the judge model failed
    "NOT_FOUND": 404, "REFUSED": 400, "INVALID_CRITERION": 400, "INVALID_ARGUMENT": 400,
}


def parse_criteria(value: str) -> tuple[str, ...]:
    """The criteria an `op-criteria` header names, or a 400 naming the header and what is wrong."""
    try:
        refs = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise ProxyError(400, f"{_SHAPE}; it is not valid JSON") from None
    if not isinstance(refs, list) or not all(isinstance(ref, str) for ref in refs):
        raise ProxyError(400, _SHAPE)
    if len(refs) > MAX_CRITERIA:
        raise ProxyError(400, f"`{HEADER}` header names {len(refs)} criteria; at most {MAX_CRITERIA} are judged")
    seen: set[str] = set()
    for ref in refs:
        if not ref.strip():
            raise ProxyError(400, f"`{HEADER}` header has an empty criterion name")
        if len(ref) > MAX_REF_CHARS:
            raise ProxyError(400, f"`{HEADER}` header has a criterion name longer than {MAX_REF_CHARS} characters")
        name = base_name(ref)
        if name in seen:
            raise ProxyError(400, f"`{HEADER}` header names criterion {name} twice; each choice gets one result "
                                  "per criterion")
        seen.add(name)
    return tuple(refs)


def base_name(ref: str) -> str:
    """`name@vN` → `name`: results are keyed by the criterion, whatever its version."""
    return ref.split("@", 1)[0]


def error_code(code: str) -> int:
    """The numeric errorCode of a result: criteria-judge's code when it is a number, else its HTTP equivalent."""
    if code.isdigit():
        return int(code)
    return _ERROR_CODES.get(code.upper().removeprefix("JUDGE_"), 500)


def _error(code: int, message: str) -> dict[str, Any]:
    return {"status": "error", "errorCode": code, "errorMessage": message}


@dataclass
class Judged:
    """Each choice's `criteria_results` (in the order of the completion's choices) and what judging took."""

    results: list[dict[str, dict[str, Any]]]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float = 0.0
    failed: str | None = field(default=None)  # why no judge ran at all

    @classmethod
    def all_failed(cls, criteria: tuple[str, ...], choices: int, code: int, message: str) -> Judged:
        return cls([{base_name(ref): _error(code, message) for ref in criteria} for _ in range(choices)],
                   failed=message)

    def usage(self) -> dict[str, Any]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.total_tokens, "cost_usd": self.cost_usd}


def _result(r: criteria_pb2.CriterionResult) -> dict[str, Any]:
    if r.status == "success":
        return {"status": "success", "score": r.score,
                "explanation": r.explanation if r.HasField("explanation") else None}
    return _error(error_code(r.error_code), r.error_message or "the criterion could not be judged")


def judge_input(body: dict[str, Any]) -> dict[str, Any]:
    """What the judges see of the call: its messages, and its tools and tool choice where it had them."""
    judged = {"messages": body.get("messages")}
    for key in ("tools", "tool_choice"):
        if body.get(key) is not None:
            judged[key] = body[key]
    return judged


def judgeable(resp: Any) -> bool:
    """Whether an answer is a completion whose choices can be judged (an object with a list of objects)."""
    return (isinstance(resp, dict) and isinstance(resp.get("choices"), list)
            and all(isinstance(c, dict) for c in resp["choices"]))


def choice_outputs(resp: dict[str, Any]) -> list[dict[str, Any]]:
    """Each choice's message, in the completion's order (an empty assistant message where it has none)."""
    outputs = []
    for choice in resp["choices"]:
        message = choice.get("message")
        outputs.append(message if isinstance(message, dict) else {"role": "assistant", "content": None})
    return outputs


def ranked(resp: dict[str, Any], judged: Judged) -> dict[str, Any]:
    """The completion (`judgeable`) with each choice's results, its choices best first (stable) and
    renumbered, and the judging added to its usage. `resp` is left as it was."""
    scored = []
    for choice, results in zip(resp["choices"], judged.results, strict=True):
        combined = sum(r["score"] for r in results.values() if r["status"] == "success")
        scored.append((combined, {**choice, "criteria_results": results}))
    scored.sort(key=lambda pair: -pair[0])  # sort is stable: equal scores keep the upstream's order
    out = {**resp, "choices": [{**choice, "index": i} for i, (_, choice) in enumerate(scored)]}
    usage = resp.get("usage")
    usage = dict(usage) if isinstance(usage, dict) else {}
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        own = usage.get(key)
        usage[key] = (own if isinstance(own, int) and not isinstance(own, bool) else 0) + getattr(judged, key)
    usage["criteria"] = judged.usage()
    out["usage"] = usage
    return out


class CriteriaJudge:
    """criteria-judge as the proxy calls it: resolve a call's criteria, then judge its choices."""

    def __init__(self, target: str | None, timeout_s: float = 120.0) -> None:
        self._target = target
        self._timeout_s = timeout_s
        self._channel: grpc.aio.Channel | None = None
        self._stub: criteria_pb2_grpc.CriteriaStub | None = None

    async def start(self) -> None:
        if self._target:
            self._channel = client_channel(self._target)
            self._stub = criteria_pb2_grpc.CriteriaStub(self._channel)

    async def stop(self) -> None:
        if self._channel is not None:
            await self._channel.close()

    async def resolve(self, project_id: str, criteria: tuple[str, ...]) -> None:
        """A 404 (ProxyError) naming the first unknown criterion or version, a 400 for a malformed one.

        When criteria-judge cannot answer, the call goes on: judging will fail the same way, and each
        result will say so, rather than the completion being refused for it."""
        if self._stub is None:
            return
        try:
            await self._stub.ResolveCriteria(
                criteria_pb2.ResolveCriteriaRequest(project_id=project_id, criteria=criteria),
                timeout=RESOLVE_DEADLINE_S)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise ProxyError(404, exc.details() or "criterion not found") from None
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise ProxyError(400, exc.details() or f"`{HEADER}` names an invalid criterion") from None
            log.warning("criteria-judge could not resolve op-criteria (%s: %s); judging will report it",
                        exc.code().name, exc.details())

    async def judge(self, project_id: str, criteria: tuple[str, ...], body: dict[str, Any],
                    resp: dict[str, Any]) -> Judged:
        """Every choice of `resp` judged by every criterion; never raises (failures become error results)."""
        outputs = choice_outputs(resp)
        if self._stub is None:
            return Judged.all_failed(criteria, len(outputs), 503, NOT_CONFIGURED)
        request = criteria_pb2.JudgeChoicesRequest(
            project_id=project_id, criteria=criteria, input_json=orjson.dumps(judge_input(body)),
            outputs_json=[orjson.dumps(o) for o in outputs])
        try:
            answer = await self._stub.JudgeChoices(request, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as exc:
            message = f"criteria-judge could not judge this completion ({exc.code().name}: {exc.details()})"
            log.warning("%s", message)
            return Judged.all_failed(criteria, len(outputs), error_code(exc.code().name), message)
        if len(answer.choices) != len(outputs):
            message = f"criteria-judge judged {len(answer.choices)} choices of {len(outputs)}"
            log.warning("%s", message)
            return Judged.all_failed(criteria, len(outputs), 502, message)
        results = []
        for choice in answer.choices:
            got = {r.criterion: _result(r) for r in choice.results}
            results.append({base_name(ref): got.get(base_name(ref), _error(502, "criteria-judge gave no result"))
                            for ref in criteria})
        u = answer.usage
        return Judged(results, u.prompt_tokens, u.completion_tokens, u.total_tokens, u.cost_usd)
