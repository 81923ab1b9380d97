"""Judging one output under one criterion version: by an LLM judge through proxy-router, or by a
reward model through inference. The judge API, `op-criteria` and the alignment worker all judge here.

The LLM judge's verdict is read only from the arguments of its forced `record_judgement` tool call
(structured output): an answer without that call, or with arguments that are not `{explanation:
string, passed: boolean}`, is a judging error, never free text read for a verdict. The call's
optional `score` grades a verdict (0.8 for a clear pass, 0.6 for a narrow one) where it agrees with
`passed`; without one a pass scores 1 and a fail 0. Judge calls go
through proxy-router like any other call, so they are logged (with `op_criterion` metadata naming the
criterion version), cached and costed in the project.

Failures are `JudgeError`s of a `kind` that says what the callers should do: `unreachable` (a service
the judge needs did not answer: the alignment worker waits and tries again later, never records it),
`timeout`, `upstream` (the judge model answered with an error), `bad_verdict` (it answered without a
usable verdict) and `refused` (the reward model refused the conversation).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import grpc
import orjson
from refinery.events.criteria import CriterionVersionSpec
from refinery.events.request_logs import Usage as CallUsage
from refinery.proxy_client import ProxyClient, ProxyUnreachable, error_text
from refinery.rpc import inference_pb2, models_pb2
from refinery.wire.pricing import cost_usd

from criteria_judge.templating import FORCED_TOOL_CHOICE, JUDGEMENT_TOOL, TOOL_NAME, judge_messages

REWARD_KIND = "openpipeReward"

ErrorKind = Literal["unreachable", "timeout", "upstream", "bad_verdict", "refused"]


class JudgeError(Exception):
    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message

    @property
    def code(self) -> str:
        """The `errorCode` an op-criteria result carries."""
        return {"unreachable": "JUDGE_UNAVAILABLE", "timeout": "JUDGE_TIMEOUT", "upstream": "JUDGE_FAILED",
                "bad_verdict": "JUDGE_INVALID_VERDICT", "refused": "JUDGE_REFUSED"}[self.kind]


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens,
                     self.total_tokens + other.total_tokens, self.cost_usd + other.cost_usd)


@dataclass(frozen=True)
class Verdict:
    score: float  # in [0, 1]
    explanation: str | None
    usage: Usage

    @property
    def judgement(self) -> Literal["PASS", "FAIL"]:
        return "PASS" if self.score >= 0.5 else "FAIL"


@dataclass(frozen=True)
class Target:
    """A criterion version to judge with (for a reward model named directly, its slug and version 1)."""

    project_id: str
    name: str
    spec: CriterionVersionSpec

    @property
    def label(self) -> str:
        return f"{self.name}@v{self.spec.version}"


def read_verdict(response: Any) -> tuple[bool, str]:
    """(passed, explanation) from a chat completion whose first choice called `record_judgement`."""
    passed, explanation, _ = read_judgement(response)
    return passed, explanation


def graded_score(passed: bool, given: Any) -> float:
    """The judge's own score where it gave one in [0, 1] that agrees with its verdict (at least 0.5
    for a pass, below 0.5 for a fail); otherwise 1 for a pass and 0 for a fail. `passed` decides:
    a score that contradicts it is not read as a verdict."""
    if (isinstance(given, (int, float)) and not isinstance(given, bool) and math.isfinite(given)
            and 0 <= given <= 1 and (given >= 0.5) == passed):
        return float(given)
    return 1.0 if passed else 0.0


def read_judgement(response: Any) -> tuple[bool, str, float]:
    """(passed, explanation, score) from a chat completion whose first choice called `record_judgement`."""
    try:
        message = response["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        raise JudgeError("bad_verdict", "the judge's answer has no message") from None
    calls = message.get("tool_calls") if isinstance(message, dict) else None
    call = next((c for c in calls or [] if isinstance(c, dict) and isinstance(c.get("function"), dict)
                 and c["function"].get("name") == TOOL_NAME), None)
    if call is None:
        raise JudgeError("bad_verdict", f"the judge model answered without calling {TOOL_NAME}")
    raw = call["function"].get("arguments")
    try:
        args = orjson.loads(raw) if isinstance(raw, (str, bytes)) else raw
    except orjson.JSONDecodeError:
        raise JudgeError("bad_verdict", f"the judge's {TOOL_NAME} arguments are not JSON") from None
    if not isinstance(args, dict):
        raise JudgeError("bad_verdict", f"the judge's {TOOL_NAME} arguments are not a JSON object")
    passed, explanation = args.get("passed"), args.get("explanation")
    if not isinstance(passed, bool):
        raise JudgeError("bad_verdict", f"the judge's {TOOL_NAME} call has no boolean `passed`")
    if not isinstance(explanation, str):
        raise JudgeError("bad_verdict", f"the judge's {TOOL_NAME} call has no string `explanation`")
    return passed, explanation, graded_score(passed, args.get("score"))


def usage_of(response: Any, model: str) -> Usage:
    raw = response.get("usage") if isinstance(response, dict) else None
    if not isinstance(raw, dict):
        return Usage()

    def count(key: str) -> int:
        value = raw.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0

    prompt, completion = count("prompt_tokens"), count("completion_tokens")
    total = count("total_tokens") or prompt + completion
    cost = cost_usd(model, CallUsage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total))
    return Usage(prompt, completion, total, cost or 0.0)


def judge_request(target: Target, judged_input: dict[str, Any], output: dict[str, Any]) -> dict[str, Any]:
    """The chat completion that asks the judge model for its verdict."""
    spec = target.spec
    return {
        "model": spec.judge_model,
        "messages": judge_messages(spec.prompt, spec.templated_variables, judged_input, output),
        "tools": [JUDGEMENT_TOOL],
        "tool_choice": FORCED_TOOL_CHOICE,
        "temperature": 0,
        "metadata": {"op_criterion": target.label},
    }


class LlmJudge:
    """Judges through proxy-router (`op-cache: readWrite`: the same question costs once)."""

    def __init__(self, proxy: ProxyClient) -> None:
        self._proxy = proxy

    async def judge(self, target: Target, judged_input: dict[str, Any], output: dict[str, Any]) -> Verdict:
        model = target.spec.judge_model
        try:
            status, raw = await self._proxy.chat(target.project_id, judge_request(target, judged_input, output),
                                                 {"op-cache": "readWrite"})
        except ProxyUnreachable as exc:
            raise JudgeError("unreachable", str(exc)) from None
        if status != 200:
            raise JudgeError("upstream", f"judge model {model} answered {status}: {error_text(raw)}")
        try:
            response = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise JudgeError("bad_verdict", f"judge model {model} answered with a body that is not JSON") from None
        _, explanation, score = read_judgement(response)
        return Verdict(score, explanation, usage_of(response, model))


_UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED)


class RewardModels:
    """A project's reward models as model-registry knows them."""

    def __init__(self, registry: Any) -> None:
        self._registry = registry

    async def get(self, project_id: str, slug: str) -> models_pb2.Model | None:
        """The model named `slug` in the project, None when there is none; `unreachable` when the
        registry does not answer."""
        try:
            return await self._registry.GetModel(models_pb2.ModelRef(project_id=project_id, slug=slug), timeout=10)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return None
            raise JudgeError("unreachable", f"model-registry unavailable: {exc.code().name}") from None

    @staticmethod
    def is_reward_model(model: models_pb2.Model) -> bool:
        try:
            config = orjson.loads(model.training_config_json or b"{}")
        except orjson.JSONDecodeError:
            return False
        return isinstance(config, dict) and config.get("provider") == REWARD_KIND

    async def deployed(self, project_id: str, slug: str) -> models_pb2.Model | None:
        """The DEPLOYED reward model named `slug`, else None."""
        model = await self.get(project_id, slug)
        if model is None or model.status != "DEPLOYED" or not self.is_reward_model(model):
            return None
        return model


class RewardJudge:
    """Scores with a reward model through inference's ScoreReward."""

    def __init__(self, models: RewardModels, inference: Any | None) -> None:
        self._models = models
        self._inference = inference

    async def judge(self, target: Target, judged_input: dict[str, Any], output: dict[str, Any]) -> Verdict:
        slug = target.spec.reward_model
        if self._inference is None:
            raise JudgeError("refused", "no inference service is configured to score with reward models")
        model = await self._models.deployed(target.project_id, slug)
        if model is None:
            raise JudgeError("refused", f"reward model {slug} is not a DEPLOYED openpipeReward model of the project")
        messages = [*list(judged_input.get("messages") or []), {"role": "assistant", **output}]
        tools = judged_input.get("tools")
        request = inference_pb2.RewardRequest(model_id=model.id, messages_json=orjson.dumps(messages),
                                              tools_json=orjson.dumps(tools) if tools else b"")
        try:
            resp = await self._inference.ScoreReward(request)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise JudgeError("timeout", f"reward model {slug} did not answer in time") from None
            if exc.code() in _UNREACHABLE:
                raise JudgeError("unreachable", f"inference unavailable: {exc.code().name}") from None
            raise JudgeError("refused", f"reward model {slug}: {exc.details()}") from None
        score = min(1.0, max(0.0, float(resp.score)))
        return Verdict(score, None, Usage(prompt_tokens=resp.tokens, total_tokens=resp.tokens))


JudgeFn = Callable[[Target, dict[str, Any], dict[str, Any]], Awaitable[Verdict]]


class Judges:
    """The one way to judge: picks the LLM or reward judge and bounds the wait."""

    def __init__(self, llm: JudgeFn, reward: JudgeFn, timeout_s: float) -> None:
        self._llm = llm
        self._reward = reward
        self.timeout_s = timeout_s

    async def judge(self, target: Target, judged_input: dict[str, Any], output: dict[str, Any]) -> Verdict:
        judge = self._reward if target.spec.reward_model else self._llm
        try:
            async with asyncio.timeout(self.timeout_s):
                return await judge(target, judged_input, output)
        except TimeoutError:
            raise JudgeError("timeout", f"the judge did not answer within {self.timeout_s:g} s") from None
