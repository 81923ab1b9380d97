"""eval's gRPC API (see proto/refinery/rpc/evals.proto, which lists the refusals).

Typed errors of the parts become status codes here, once: NotFound → NOT_FOUND (the proto's words:
"Eval <id> not found", "Dataset <id> not found", "Criterion <name> not found", "Model <slug> not
found"), Invalid → INVALID_ARGUMENT naming the field, a service it needs not answering → UNAVAILABLE.

CreateEval checks everything before it writes anything (the request itself, then the dataset's TEST
split, the `openpipe:` models, the criterion, the grader), then writes the eval and all its rows in
one transaction: a refused request leaves nothing behind. Every query is filtered by project: another
project's eval is NOT_FOUND.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import grpc
from refinery.rpc import criteria_pb2, evals_pb2, evals_pb2_grpc

from eval.code_grading import CodeGrader
from eval.dataset_rows import DatasetRows
from eval.definitions import Invalid, NotFound, Spec, Unavailable, check_models, check_spec, openpipe_slug
from eval.outcomes import Unreachable
from eval.registry import Registry
from eval.runner import EvalRunner
from eval.store import EvalStore, EvalView, RowView, row_bytes

log = logging.getLogger("refinery.eval")

T = TypeVar("T")


@dataclass(frozen=True)
class Limits:
    default_judge_model: str = "gpt-4o"
    max_rows: int = 5000
    max_event_bytes: int = 1024 * 1024  # one rows_added event at most (half the bus's limit)
    criteria_timeout_s: float = 10.0


def eval_message(v: EvalView) -> evals_pb2.Eval:
    results = []
    for r in v.results.results:
        msg = evals_pb2.ModelResult(model=r.model, errors=r.errors, cost_usd=r.cost_usd, comparisons=r.comparisons,
                                    scored=r.scored)
        if r.score is not None:
            msg.score = r.score
        if r.latency_ms_p50 is not None:
            msg.latency_ms_p50 = r.latency_ms_p50
        results.append(msg)
    matrix = []
    for c in v.results.matrix:
        cell = evals_pb2.MatrixCell(model=c.model, opponent=c.opponent, comparisons=c.comparisons)
        if c.win_rate is not None:
            cell.win_rate = c.win_rate
        matrix.append(cell)
    return evals_pb2.Eval(
        id=v.id, name=v.name, dataset_id=v.dataset_id, type=v.type, models=v.models, status=v.status, done=v.done,
        total=v.total, results=results, matrix=matrix, comparisons=v.results.comparisons, judge_model=v.judge_model,
        instructions=v.instructions, criterion=v.criterion, grader=v.grader, auto_add_models=v.auto_add_models,
        rows=v.row_count, error=v.error or "", created_at=v.created_at, updated_at=v.updated_at)


def row_message(r: RowView) -> evals_pb2.EvalRow:
    outputs = [evals_pb2.ModelOutput(model=o.model, output_json=o.output_json, error=o.error or "",
                                     latency_ms=o.latency_ms or 0.0, cost_usd=o.cost_usd, done=o.done)
               for o in r.outputs]
    judgements = []
    for j in r.judgements:
        msg = evals_pb2.RowJudgement(model=j.model, opponent=j.opponent or "", reasoning=j.reasoning,
                                     error=j.error or "", winner=j.winner or "", done=j.done)
        if j.score is not None:
            msg.score = j.score
        judgements.append(msg)
    return evals_pb2.EvalRow(id=r.row_id, input_json=r.input_json, dataset_output_json=r.dataset_output_json,
                             outputs=outputs, judgements=judgements)


class EvalsServicer(evals_pb2_grpc.EvalsServicer):
    def __init__(self, store: EvalStore, runner: EvalRunner, datasets: DatasetRows, registry: Registry,
                 criteria: Any, grader: CodeGrader, limits: Limits | None = None) -> None:
        self._store = store
        self._runner = runner
        self._datasets = datasets
        self._registry = registry
        self._criteria = criteria  # a criteria_pb2_grpc.CriteriaStub
        self._grader = grader
        self._limits = limits or Limits()

    # ---- the one mapping of typed errors to status codes ------------------------------------------

    async def _guard(self, context: grpc.aio.ServicerContext, work: Awaitable[T]) -> T:
        try:
            return await work
        except NotFound as exc:
            await self._abort(context, grpc.StatusCode.NOT_FOUND, str(exc))
        except Invalid as exc:
            await self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Unavailable as exc:
            await self._abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))

    @staticmethod
    async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
        await context.abort(code, message)
        raise AssertionError("abort returned")  # pragma: no cover

    async def _thread(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kwargs)

    # ---- checks that need other services ------------------------------------------------------------

    async def _check_models(self, project_id: str, models: Sequence[str]) -> None:
        for model in models:
            slug = openpipe_slug(model)
            if slug is not None:
                await self._registry.check_chat_model(project_id, slug)

    async def _check_criterion(self, project_id: str, criterion: str) -> None:
        try:
            await self._criteria.ResolveCriteria(criteria_pb2.ResolveCriteriaRequest(
                project_id=project_id, criteria=[criterion]), timeout=self._limits.criteria_timeout_s)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(exc.details() or f"Criterion {criterion} not found") from None
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise Invalid(f"criterion: {exc.details()}") from None
            raise Unavailable(f"criteria-judge unavailable: {exc.code().name}") from None

    async def _check_grader(self, source: str) -> None:
        try:
            problem = await self._grader.check(source)
        except Unreachable as exc:
            raise Unavailable(str(exc)) from None
        if problem is not None:
            raise Invalid(f"grader does not compile: {problem}")

    async def _check_needs(self, project_id: str, spec: Spec) -> None:
        await self._check_models(project_id, spec.models)
        if spec.type == "head_to_head":
            await self._check_models(project_id, [spec.judge_model])
        if spec.type == "criterion":
            await self._check_criterion(project_id, spec.criterion)
        if spec.type == "code":
            await self._check_grader(spec.grader)

    # ---- evals -------------------------------------------------------------------------------------

    async def _create(self, r: evals_pb2.CreateEvalRequest) -> evals_pb2.Eval:
        spec = check_spec(name=r.name, dataset_id=r.dataset_id, type_=r.type, models=list(r.models),
                          judge_model=r.judge_model, instructions=r.instructions, criterion=r.criterion,
                          grader=r.grader, auto_add_models=r.auto_add_models,
                          default_judge_model=self._limits.default_judge_model)
        await self._datasets.count(r.project_id, spec.dataset_id, self._limits.max_rows)
        await self._check_needs(r.project_id, spec)
        rows = await self._datasets.read(r.project_id, spec.dataset_id, self._limits.max_rows)
        for row in rows:
            size = row_bytes(row)
            if size > self._limits.max_event_bytes:
                raise Invalid(f"TEST entry {row.row_id} is {size} bytes; an eval row may be at most "
                              f"{self._limits.max_event_bytes} bytes")
        view = await self._thread(self._store.create, r.project_id, spec, rows,
                                  max_event_bytes=self._limits.max_event_bytes)
        self._runner.wake()
        return eval_message(view)

    async def CreateEval(self, request, context):
        return await self._guard(context, self._create(request))

    async def _get(self, r: evals_pb2.EvalRef) -> evals_pb2.Eval:
        return eval_message(await self._thread(self._store.get, r.project_id, r.eval_id))

    async def GetEval(self, request, context):
        return await self._guard(context, self._get(request))

    async def _list(self, r: evals_pb2.ListEvalsRequest) -> evals_pb2.ListEvalsResponse:
        views = await self._thread(self._store.in_project, r.project_id, r.dataset_id or None)
        return evals_pb2.ListEvalsResponse(evals=[eval_message(v) for v in views])

    async def ListEvals(self, request, context):
        return await self._guard(context, self._list(request))

    async def _rows(self, r: evals_pb2.ListEvalRowsRequest) -> evals_pb2.ListEvalRowsResponse:
        if r.limit < 0 or r.offset < 0:
            raise Invalid("limit and offset must not be negative")
        limit = min(r.limit or 100, 1000)
        rows, total = await self._thread(self._store.rows, r.project_id, r.eval_id, limit, r.offset)
        return evals_pb2.ListEvalRowsResponse(rows=[row_message(x) for x in rows], total=total)

    async def ListEvalRows(self, request, context):
        return await self._guard(context, self._rows(request))

    async def _delete(self, r: evals_pb2.EvalRef) -> evals_pb2.DeleteEvalResponse:
        await self._thread(self._store.delete, r.project_id, r.eval_id)
        self._runner.forget(r.eval_id)
        return evals_pb2.DeleteEvalResponse(deleted=True)

    async def DeleteEval(self, request, context):
        return await self._guard(context, self._delete(request))

    async def _add_models(self, r: evals_pb2.AddModelsRequest) -> evals_pb2.Eval:
        current = await self._thread(self._store.get, r.project_id, r.eval_id)
        if not r.models:
            raise Invalid("models must name at least one model")
        models = check_models(list(r.models), already=current.models)
        await self._check_models(r.project_id, models)
        view = await self._thread(self._store.add_models, r.project_id, r.eval_id, models, reason="request")
        self._runner.wake()
        if view is None:  # check_models already refused models in the eval: nothing can be left out
            raise Invalid("every model given is in this eval already")
        return eval_message(view)

    async def AddModels(self, request, context):
        return await self._guard(context, self._add_models(request))
