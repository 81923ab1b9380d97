"""criteria-judge's gRPC API (see proto/refinery/rpc/criteria.proto, which lists the refusals).

Typed errors of the parts become status codes here, once: NotFound → NOT_FOUND (with the SDK's
words), Invalid → INVALID_ARGUMENT, Conflict → ALREADY_EXISTS, a service it needs not answering →
UNAVAILABLE, a judge out of time → DEADLINE_EXCEEDED. The REST shape of criteria is the gateway's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import grpc
import orjson
from refinery.events.criteria import CriterionVersionSpec, HumanJudgement
from refinery.rpc import criteria_pb2, criteria_pb2_grpc

from criteria_judge.alignment import AlignmentWorker
from criteria_judge.definitions import (
    MAX_ALIGNMENT_ROWS,
    VARIABLES,
    Conflict,
    Invalid,
    NotFound,
    check_judge_model,
    check_name,
    check_prompt,
    check_variables,
)
from criteria_judge.jsonl import MAX_JSONL_BYTES, LineError, parse_alignment_jsonl
from criteria_judge.judging import JudgeError, Judges, RewardModels, Target, Usage, Verdict
from criteria_judge.resolution import Resolver
from criteria_judge.sampling import MAX_SAMPLE, DatasetSampler, DatasetUnavailable
from criteria_judge.stats import alignment_stats
from criteria_judge.store import CriteriaStore, CriterionView, NewRow, RowView

log = logging.getLogger("refinery.criteria_judge")

T = TypeVar("T")

LABELS: dict[str, HumanJudgement] = {"PASS": "PASS", "FAIL": "FAIL", "SKIP": "SKIP"}
_PUBLISH_TRIES = 3
_JUDGE_CODES = {"timeout": grpc.StatusCode.DEADLINE_EXCEEDED, "refused": grpc.StatusCode.INVALID_ARGUMENT}


@dataclass(frozen=True)
class Limits:
    default_judge_model: str = "gpt-4o"
    judge_concurrency: int = 8
    max_event_bytes: int = 1024 * 1024  # one rows_added event at most (half the bus's limit)
    max_line_bytes: int = 1024 * 1024
    max_alignment_rows: int = MAX_ALIGNMENT_ROWS


def _version_message(v: Any) -> criteria_pb2.CriterionVersion:
    s = v.spec
    return criteria_pb2.CriterionVersion(version=s.version, prompt=s.prompt, judge_model=s.judge_model,
                                         templated_variables=list(s.templated_variables),
                                         reward_model=s.reward_model, created_at=v.created_at)


def criterion_message(c: CriterionView) -> criteria_pb2.Criterion:
    return criteria_pb2.Criterion(id=c.id, name=c.name, versions=[_version_message(v) for v in c.versions],
                                  created_at=c.created_at, updated_at=c.updated_at, alignment_rows=c.alignment_rows)


def row_message(r: RowView) -> criteria_pb2.AlignmentRow:
    msg = criteria_pb2.AlignmentRow(id=r.id, input_json=r.input_json, output_json=r.output_json,
                                    human_judgement=r.human_judgement or "", created_at=r.created_at)
    if r.judge is not None:
        msg.judge.CopyFrom(criteria_pb2.Judgement(judgement=r.judge.judgement, score=r.judge.score,
                                                  explanation=r.judge.explanation, error=r.judge.error))
    return msg


def usage_message(u: Usage) -> criteria_pb2.JudgeUsage:
    return criteria_pb2.JudgeUsage(prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens,
                                   total_tokens=u.total_tokens, cost_usd=u.cost_usd)


def _json_object(raw: bytes, field: str, *, empty_ok: bool) -> dict[str, Any]:
    if not raw:
        if empty_ok:
            return {}
        raise Invalid(f"{field} is required")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Invalid(f"{field} is not JSON") from None
    if not isinstance(value, dict):
        raise Invalid(f"{field} must be a JSON object")
    return value


def judged_input_of(raw: bytes) -> dict[str, Any]:
    judged = _json_object(raw, "input", empty_ok=True)
    messages = judged.get("messages")
    if messages is not None and not (isinstance(messages, list) and all(isinstance(m, dict) for m in messages)):
        raise Invalid("input.messages must be an array of messages")
    tools = judged.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise Invalid("input.tools must be an array")
    return judged


def output_of(raw: bytes) -> dict[str, Any]:
    output = _json_object(raw, "output", empty_ok=False)
    if output.get("role", "assistant") != "assistant":
        raise Invalid("output must be an assistant message")
    return output


class CriteriaServicer(criteria_pb2_grpc.CriteriaServicer):
    def __init__(self, store: CriteriaStore, judges: Judges, resolver: Resolver, reward_models: RewardModels,
                 sampler: DatasetSampler, worker: AlignmentWorker, limits: Limits | None = None) -> None:
        self._store = store
        self._judges = judges
        self._resolver = resolver
        self._reward_models = reward_models
        self._sampler = sampler
        self._worker = worker
        self._limits = limits or Limits()

    # ---- the one mapping of typed errors to status codes ------------------------------------------

    async def _guard(self, context: grpc.aio.ServicerContext, work: Awaitable[T]) -> T:
        try:
            return await work
        except NotFound as exc:
            await self._abort(context, grpc.StatusCode.NOT_FOUND, str(exc))
        except Invalid as exc:
            await self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Conflict as exc:
            await self._abort(context, grpc.StatusCode.ALREADY_EXISTS, str(exc))
        except DatasetUnavailable as exc:
            await self._abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))
        except JudgeError as exc:
            await self._abort(context, _JUDGE_CODES.get(exc.kind, grpc.StatusCode.UNAVAILABLE), exc.message)

    @staticmethod
    async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
        await context.abort(code, message)
        raise AssertionError("abort returned")  # pragma: no cover

    async def _thread(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kwargs)

    # ---- criteria ---------------------------------------------------------------------------------

    async def _reward_spec(self, project_id: str, slug: str) -> CriterionVersionSpec:
        model = await self._reward_models.get(project_id, slug)
        if model is None:
            raise Invalid(f"rewardModel {slug!r} is not a model of this project")
        if not self._reward_models.is_reward_model(model):
            raise Invalid(f"rewardModel {slug!r} is not a reward model (trainingConfig.provider openpipeReward)")
        if model.status != "DEPLOYED":
            raise Invalid(f"rewardModel {slug!r} is not DEPLOYED (status {model.status})")
        return CriterionVersionSpec(version=1, reward_model=slug)

    async def _create(self, r: criteria_pb2.CreateCriterionRequest) -> criteria_pb2.Criterion:
        name = check_name(r.name)
        if r.reward_model:
            if r.prompt or r.judge_model or r.templated_variables_given:
                raise Invalid("a reward-model criterion takes rewardModel only, not prompt, judgeModel or "
                              "templatedVariables")
            spec = await self._reward_spec(r.project_id, r.reward_model)
        else:
            variables = check_variables(list(r.templated_variables)) if r.templated_variables_given else list(
                VARIABLES)
            spec = CriterionVersionSpec(
                version=1, prompt=check_prompt(r.prompt),
                judge_model=check_judge_model(r.judge_model or self._limits.default_judge_model),
                templated_variables=variables)
        return criterion_message(await self._thread(self._store.create, r.project_id, name, spec))

    async def CreateCriterion(self, request, context):
        return await self._guard(context, self._create(request))

    async def _next_spec(self, r: criteria_pb2.UpdateCriterionRequest, latest: CriterionVersionSpec
                         ) -> CriterionVersionSpec:
        reward = r.reward_model if r.HasField("reward_model") else latest.reward_model
        if reward:
            if (r.HasField("prompt") and r.prompt) or (r.HasField("judge_model") and r.judge_model) \
                    or r.templated_variables_given:
                raise Invalid("a reward-model criterion takes rewardModel only, not prompt, judgeModel or "
                              "templatedVariables")
            return await self._reward_spec(r.project_id, reward)
        prompt = r.prompt if r.HasField("prompt") else latest.prompt
        judge_model = r.judge_model if r.HasField("judge_model") else latest.judge_model
        variables = list(r.templated_variables) if r.templated_variables_given else (
            list(latest.templated_variables) or list(VARIABLES))
        return CriterionVersionSpec(
            version=1, prompt=check_prompt(prompt),
            judge_model=check_judge_model(judge_model or self._limits.default_judge_model),
            templated_variables=check_variables(variables))

    async def _update(self, r: criteria_pb2.UpdateCriterionRequest) -> criteria_pb2.Criterion:
        for attempt in range(1, _PUBLISH_TRIES + 1):
            view = await self._thread(self._store.get, r.project_id, r.name)
            latest = view.latest.spec
            spec = await self._next_spec(r, latest)
            if spec.model_copy(update={"version": latest.version}) == latest:
                raise Invalid("the update changes nothing: give a new prompt, judgeModel, templatedVariables or "
                              "rewardModel")
            try:
                published = await self._thread(self._store.publish, r.project_id, view.name, latest.version, spec)
            except Conflict:
                if attempt == _PUBLISH_TRIES:
                    raise
                continue
            self._worker.wake()
            return criterion_message(published)
        raise AssertionError("unreachable")  # pragma: no cover

    async def UpdateCriterion(self, request, context):
        return await self._guard(context, self._update(request))

    async def _get(self, r: criteria_pb2.CriterionRef) -> criteria_pb2.Criterion:
        return criterion_message(await self._thread(self._store.get, r.project_id, r.name))

    async def GetCriterion(self, request, context):
        return await self._guard(context, self._get(request))

    async def _list(self, r: criteria_pb2.ListCriteriaRequest) -> criteria_pb2.ListCriteriaResponse:
        views = await self._thread(self._store.in_project, r.project_id)
        return criteria_pb2.ListCriteriaResponse(criteria=[criterion_message(v) for v in views])

    async def ListCriteria(self, request, context):
        return await self._guard(context, self._list(request))

    async def _delete(self, r: criteria_pb2.CriterionRef) -> criteria_pb2.DeleteCriterionResponse:
        deleted = await self._thread(self._store.delete, r.project_id, r.name)
        self._worker.forget(deleted.id)
        return criteria_pb2.DeleteCriterionResponse(deleted=True)

    async def DeleteCriterion(self, request, context):
        return await self._guard(context, self._delete(request))

    # ---- alignment sets ------------------------------------------------------------------------------

    async def _add_rows(self, r: criteria_pb2.AddAlignmentRowsRequest) -> criteria_pb2.AddAlignmentRowsResponse:
        view = await self._thread(self._store.get, r.project_id, r.name)
        if view.alignment_rows >= self._limits.max_alignment_rows:  # refused before any output is generated
            raise Invalid(f"criterion {view.name}'s alignment set holds {view.alignment_rows} rows, its limit")
        source = r.WhichOneof("source")
        rows: list[NewRow]
        errors: list[LineError]
        dataset_id = output_model = None
        if source == "jsonl":
            if len(r.jsonl) > MAX_JSONL_BYTES:
                raise Invalid(f"the JSONL file is {len(r.jsonl)} bytes; an alignment set file may be at most "
                              f"10 MB ({MAX_JSONL_BYTES} bytes)")
            max_line = min(self._limits.max_line_bytes, self._limits.max_event_bytes)
            rows, errors = await self._thread(parse_alignment_jsonl, r.jsonl, max_line)
        elif source == "dataset":
            d = r.dataset
            if not d.dataset_id:
                raise Invalid("datasetId is required")
            if not 1 <= d.count <= MAX_SAMPLE:
                raise Invalid(f"count must be between 1 and {MAX_SAMPLE}")
            sample = await self._sampler.sample(r.project_id, d.dataset_id, d.count, d.output_model.strip())
            rows, errors = sample.rows, sample.errors
            dataset_id, output_model = d.dataset_id, d.output_model.strip() or None
        else:
            raise Invalid("give a JSONL file or a dataset sample (datasetId, count)")
        added = await self._thread(self._store.add_rows, r.project_id, view.name, rows,
                                   source="jsonl" if source == "jsonl" else "dataset",
                                   max_event_bytes=self._limits.max_event_bytes,
                                   max_rows=self._limits.max_alignment_rows, dataset_id=dataset_id,
                                   output_model=output_model)
        if added:
            self._worker.wake()
        return criteria_pb2.AddAlignmentRowsResponse(
            added=added, errors=[criteria_pb2.AlignmentLineError(line=e.line, message=e.message) for e in errors])

    async def AddAlignmentRows(self, request, context):
        return await self._guard(context, self._add_rows(request))

    async def _rows(self, r: criteria_pb2.ListAlignmentRowsRequest) -> criteria_pb2.ListAlignmentRowsResponse:
        if r.version < 0 or r.limit < 0 or r.offset < 0:
            raise Invalid("version, limit and offset must not be negative")
        limit = min(r.limit or 100, 1000)
        rows, total, version = await self._thread(self._store.rows, r.project_id, r.name, r.version or None,
                                                  limit, r.offset)
        return criteria_pb2.ListAlignmentRowsResponse(rows=[row_message(x) for x in rows], total=total,
                                                      version=version)

    async def ListAlignmentRows(self, request, context):
        return await self._guard(context, self._rows(request))

    async def _label(self, r: criteria_pb2.LabelRowRequest) -> criteria_pb2.AlignmentRow:
        given = r.human_judgement.strip().upper()
        label = LABELS.get(given)
        if given and label is None:
            raise Invalid("humanJudgement must be PASS, FAIL, SKIP or null")
        return row_message(await self._thread(self._store.label, r.project_id, r.name, r.row_id, label))

    async def LabelRow(self, request, context):
        return await self._guard(context, self._label(request))

    async def _stats(self, r: criteria_pb2.StatsRequest) -> criteria_pb2.StatsResponse:
        if r.version < 0:
            raise Invalid("version must not be negative")
        pairs, version = await self._thread(self._store.labels_and_verdicts, r.project_id, r.name,
                                            r.version or None)
        s = alignment_stats(pairs)
        return criteria_pb2.StatsResponse(
            version=version, precision=s.precision, recall=s.recall, f1=s.f1, true_positives=s.true_positives,
            false_positives=s.false_positives, false_negatives=s.false_negatives, true_negatives=s.true_negatives,
            pending=s.pending, labeled=s.labeled, total=s.total)

    async def Stats(self, request, context):
        return await self._guard(context, self._stats(request))

    # ---- judging ---------------------------------------------------------------------------------------

    async def _judge(self, r: criteria_pb2.JudgeRequest) -> criteria_pb2.JudgeResponse:
        judged_input, output = judged_input_of(r.input_json), output_of(r.output_json)
        target = await self._resolver.target(r.project_id, r.criterion_id)
        verdict = await self._judges.judge(target, judged_input, output)
        return criteria_pb2.JudgeResponse(score=verdict.score, explanation=verdict.explanation,
                                          usage=usage_message(verdict.usage), judgement=verdict.judgement)

    async def Judge(self, request, context):
        return await self._guard(context, self._judge(request))

    async def _resolve(self, r: criteria_pb2.ResolveCriteriaRequest) -> criteria_pb2.ResolveCriteriaResponse:
        targets = [await self._resolver.target(r.project_id, text) for text in r.criteria]
        return criteria_pb2.ResolveCriteriaResponse(names=[t.name for t in targets])

    async def ResolveCriteria(self, request, context):
        return await self._guard(context, self._resolve(request))

    async def _judge_choices(self, r: criteria_pb2.JudgeChoicesRequest) -> criteria_pb2.JudgeChoicesResponse:
        judged_input = judged_input_of(r.input_json)
        outputs = [output_of(raw) for raw in r.outputs_json]
        targets: list[Target | criteria_pb2.CriterionResult] = []
        for text in r.criteria:
            try:
                targets.append(await self._resolver.target(r.project_id, text))
            except (NotFound, Invalid, JudgeError) as exc:  # one bad criterion fails its results, not the call
                code = "NOT_FOUND" if isinstance(exc, NotFound) else (
                    exc.code if isinstance(exc, JudgeError) else "INVALID_CRITERION")
                targets.append(criteria_pb2.CriterionResult(
                    criterion=text.partition("@")[0].strip(), status="error", error_code=code,
                    error_message=exc.message if isinstance(exc, JudgeError) else str(exc)))
        sem = asyncio.Semaphore(self._limits.judge_concurrency)

        async def one(target: Target, output: dict[str, Any]) -> Verdict | JudgeError:
            async with sem:
                try:
                    return await self._judges.judge(target, judged_input, output)
                except JudgeError as exc:
                    return exc

        done = iter(await asyncio.gather(*(one(t, o) for o in outputs for t in targets if isinstance(t, Target))))
        usage = Usage()
        choices = []
        for _ in outputs:
            results = []
            for target in targets:
                if not isinstance(target, Target):
                    results.append(target)
                    continue
                outcome = next(done)
                if isinstance(outcome, JudgeError):
                    results.append(criteria_pb2.CriterionResult(criterion=target.name, status="error",
                                                                error_code=outcome.code,
                                                                error_message=outcome.message))
                else:
                    usage += outcome.usage
                    results.append(criteria_pb2.CriterionResult(criterion=target.name, status="success",
                                                                score=outcome.score,
                                                                explanation=outcome.explanation))
            choices.append(criteria_pb2.ChoiceResults(results=results))
        return criteria_pb2.JudgeChoicesResponse(choices=choices, usage=usage_message(usage))

    async def JudgeChoices(self, request, context):
        return await self._guard(context, self._judge_choices(request))
