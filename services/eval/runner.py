"""The background runner: every open eval's missing outputs and judgements, done and recorded.

The work is whatever the store says is missing: outputs not generated yet, and judgements (a
comparison, a criterion verdict, a grade) whose outputs are all done. Creating an eval, adding models
to one and a restart therefore mean the same thing (units are missing, they get done), and nothing is
kept in memory that a restart could lose; each result is recorded once, as soon as it is known, and
the store refuses a second one for the same unit. When an open eval has every unit recorded it is
marked COMPLETED with its results.

Outputs and judgements run on separate concurrency limits (`output_concurrency`,
`judge_concurrency`), so a slow model does not hold the judges up; grades of one eval are batched
into one sandbox run. A model that fails fails its own outputs (recorded with why, the judgements on
them recorded as failed too) and the rest of the eval goes on. A service that does not answer at all
(proxy-router, criteria-judge, the sandbox) is nobody's verdict: nothing is recorded, the unit is set
aside with a growing delay and tried again. A criterion that no longer exists fails the whole eval.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Sequence
from typing import Any

from refinery.events.evals import EvalJudgementRecorded, EvalOutputGenerated

from eval.code_grading import CodeGrader, grader_args
from eval.criterion_judging import CriterionJudge
from eval.head_to_head import HeadToHeadJudge
from eval.outcomes import EvalCannotRun, Judged, Unreachable, failed
from eval.outputs import OutputGenerator
from eval.store import EvalStore, PendingJudgement, PendingOutput, Side

log = logging.getLogger("refinery.eval")

Key = tuple[str, ...]
_MAX_DEFER_S = 60.0
_FETCH_PER_SLOT = 8


def no_output(*sides: Side) -> str | None:
    """Why a judgement cannot look at its outputs (one of them failed), or None."""
    missing = [f"{s.model}: {s.error}" for s in sides if s.output is None]
    return "no output to judge from " + "; ".join(missing) if missing else None


class EvalRunner:
    def __init__(self, store: EvalStore, outputs: OutputGenerator, head_to_head: HeadToHeadJudge,
                 criteria: CriterionJudge, grader: CodeGrader, *, output_concurrency: int, judge_concurrency: int,
                 grade_batch: int = 25, retry_delay_s: float = 1.0, idle_poll_s: float = 30.0,
                 refetch_s: float = 0.2) -> None:
        self._store = store
        self._outputs = outputs
        self._head_to_head = head_to_head
        self._criteria = criteria
        self._grader = grader
        self._output_slots = output_concurrency
        self._judge_slots = judge_concurrency
        self._grade_batch = grade_batch
        self._retry_delay_s = retry_delay_s
        self._idle_poll_s = idle_poll_s
        self._refetch_s = refetch_s
        self._wake = asyncio.Event()
        self._output_queue: deque[PendingOutput] = deque()
        self._judgement_queue: deque[PendingJudgement] = deque()
        self._output_tasks: set[asyncio.Task[None]] = set()
        self._judge_tasks: set[asyncio.Task[None]] = set()
        self._in_flight: set[Key] = set()
        # Units that finished while a query for pending work ran: that query may have read them
        # before their result was recorded, and must not start them again.
        self._finished_meanwhile: set[Key] = set()
        self._deferred: dict[Key, tuple[float, float]] = {}  # unit -> (retry at, delay)
        self._dropped: set[str] = set()  # evals deleted or failed while their units were queued here
        self._touched: set[str] = set()  # evals with a unit finished since their completion was checked
        # When a look for outputs / judgements last found nothing to start: the next look waits a little
        # (a large eval's pending query is not free), unless woken.
        self._found_nothing: dict[str, float] = {}
        self._last_finish = 0.0

    # ---- what others tell the runner ----------------------------------------------------------------

    def wake(self) -> None:
        """There may be new work (an eval created, models added)."""
        self._found_nothing.clear()
        self._wake.set()

    def forget(self, eval_id: str) -> None:
        """The eval was deleted: its units already queued here are not run."""
        self._dropped.add(eval_id)

    # ---- the loop ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """The kernel's background task: start what is missing, record what finishes, complete what is
        done; then wait for news, a finished unit or a poll."""
        try:
            await self._loop()
        finally:
            tasks = [*self._output_tasks, *self._judge_tasks]
            for task in tasks:  # what is cut off is not recorded: it runs again after the restart
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _loop(self) -> None:
        check_all = True
        while True:
            self._wake.clear()
            try:
                if check_all:
                    self._touched.update(await asyncio.to_thread(self._store.open_evals))
                await self._complete_touched()
                await self._fill()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database hiccuped: try again after a pause, never stop running evals
                log.exception("the eval runner failed; trying again")
                await asyncio.sleep(self._retry_delay_s)
                continue
            check_all = not await self._wait()

    async def _wait(self) -> bool:
        """Until woken or a unit finished (True), or the poll ran out (False: check every open eval)."""
        waiter = asyncio.ensure_future(self._wake.wait())
        running = {*self._output_tasks, *self._judge_tasks}
        try:
            done, _ = await asyncio.wait({waiter, *running}, timeout=self._next_wait(),
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Not awaited: awaiting a cancelled waiter would swallow a cancellation of the runner itself.
            waiter.cancel()
        return bool(done)

    def _next_wait(self) -> float:
        now = time.monotonic()
        waits = [self._idle_poll_s, *(at - now for at, _ in self._deferred.values())]
        # A unit finished since a look found nothing: look again once the pause is over.
        waits.extend(since + self._refetch_s - now for since in self._found_nothing.values()
                     if self._last_finish >= since)
        return max(0.01, min(waits))

    def _may_look(self, kind: str, now: float) -> bool:
        since = self._found_nothing.get(kind)
        return since is None or now - since >= self._refetch_s

    def _looked(self, kind: str, queue: deque[Any], now: float) -> None:
        if queue:
            self._found_nothing.pop(kind, None)
        else:
            self._found_nothing[kind] = now

    async def _complete_touched(self) -> None:
        while self._touched:
            eval_id = self._touched.pop()
            if await asyncio.to_thread(self._store.complete_if_done, eval_id):
                log.info("eval %s completed", eval_id)

    def _excluded(self, key: Key, eval_id: str, now: float) -> bool:
        if eval_id in self._dropped or key in self._in_flight or key in self._finished_meanwhile:
            return True
        deferred = self._deferred.get(key)
        return deferred is not None and deferred[0] > now

    async def _fill(self) -> None:
        """Start units while there are free slots and work to do."""
        now = time.monotonic()
        free = self._output_slots - len(self._output_tasks)
        if free > 0 and not self._output_queue and self._may_look("outputs", now):
            asked = self._output_slots * _FETCH_PER_SLOT + len(self._in_flight) + len(self._deferred)
            self._finished_meanwhile.clear()
            found = await asyncio.to_thread(self._store.pending_outputs, asked)
            self._forget_deferred("output", found, asked)
            self._output_queue.extend(p for p in found if not self._excluded(p.key, p.eval_id, now))
            self._finished_meanwhile.clear()
            self._looked("outputs", self._output_queue, now)
        while free > 0 and self._output_queue:
            p = self._output_queue.popleft()
            if self._excluded(p.key, p.eval_id, now):
                continue
            self._start(self._output_tasks, [p.key], p.eval_id, self._output(p))
            free -= 1
        free = self._judge_slots - len(self._judge_tasks)
        if free > 0 and not self._judgement_queue and self._may_look("judgements", now):
            asked = max(self._judge_slots * _FETCH_PER_SLOT, self._grade_batch) + len(self._in_flight) + len(
                self._deferred)
            self._finished_meanwhile.clear()
            found_j = await asyncio.to_thread(self._store.pending_judgements, asked)
            self._forget_deferred("judgement", found_j, asked)
            self._judgement_queue.extend(j for j in found_j if not self._excluded(j.key, j.eval_id, now))
            self._finished_meanwhile.clear()
            self._looked("judgements", self._judgement_queue, now)
        while free > 0 and self._judgement_queue:
            j = self._judgement_queue.popleft()
            if self._excluded(j.key, j.eval_id, now):
                continue
            if j.type == "code":
                batch = [j]
                while (self._judgement_queue and len(batch) < self._grade_batch
                       and self._judgement_queue[0].eval_id == j.eval_id):
                    nxt = self._judgement_queue.popleft()
                    if not self._excluded(nxt.key, nxt.eval_id, now):
                        batch.append(nxt)
                self._start(self._judge_tasks, [b.key for b in batch], j.eval_id, self._grade(batch))
            else:
                self._start(self._judge_tasks, [j.key], j.eval_id, self._judge(j))
            free -= 1

    def _forget_deferred(self, kind: str, found: Sequence[PendingOutput | PendingJudgement], asked: int) -> None:
        """Every pending unit of `kind` is in hand (fewer came than asked): a set-aside one that is not
        was done or deleted meanwhile."""
        if len(found) >= asked:
            return
        live = {p.key for p in found}
        for key in [k for k in self._deferred if k[0] == kind and k not in live]:
            del self._deferred[key]

    def _start(self, tasks: set[asyncio.Task[None]], keys: list[Key], eval_id: str,
               work: Awaitable[None]) -> None:
        self._in_flight.update(keys)

        async def guarded() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Unreachable as exc:
                for key in keys:
                    if key not in self._deferred:  # said once per unit, not at every try
                        log.warning("eval %s waits: %s", eval_id, exc)
                    self._defer(key)
            except Exception:  # a bug must not spin on the same unit: set it aside like an outage
                log.exception("eval %s: a unit failed unexpectedly; it is tried again later", eval_id)
                for key in keys:
                    self._defer(key)
            else:
                for key in keys:
                    self._deferred.pop(key, None)
            finally:
                self._in_flight.difference_update(keys)
                self._finished_meanwhile.update(keys)
                self._touched.add(eval_id)
                self._last_finish = time.monotonic()

        task = asyncio.create_task(guarded(), name=f"eval {eval_id}")
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def _defer(self, key: Key) -> None:
        _, delay = self._deferred.get(key, (0.0, self._retry_delay_s / 2))
        delay = min(_MAX_DEFER_S, delay * 2)
        self._deferred[key] = (time.monotonic() + delay, delay)

    # ---- the units -------------------------------------------------------------------------------

    async def _output(self, p: PendingOutput) -> None:
        generated = await self._outputs.generate(p.project_id, p.eval_id, p.model, p.input)
        await asyncio.to_thread(self._store.record_output, p.eval_id, EvalOutputGenerated(
            row_id=p.row_id, model=p.model, output=generated.output, error=generated.error,
            latency_ms=generated.latency_ms, cost_usd=generated.cost_usd))

    async def _judge(self, j: PendingJudgement) -> None:
        sides = (j.first,) if j.second is None else (j.first, j.second)
        missing = no_output(*sides)
        try:
            if missing is not None:
                judged = failed(missing)
            elif j.type == "head_to_head" and j.second is not None:
                assert j.first.output is not None and j.second.output is not None
                judged = await self._head_to_head.compare(
                    j.project_id, j.eval_id, j.judge_model, j.instructions, j.input,
                    (j.first.model, j.first.output), (j.second.model, j.second.output))
            else:
                assert j.first.output is not None
                judged = await self._criteria.judge(j.project_id, j.criterion, j.input, j.first.output)
        except EvalCannotRun as exc:
            await self._fail(j.eval_id, str(exc))
            return
        await self._record(j, judged)

    async def _grade(self, batch: list[PendingJudgement]) -> None:
        ready = [j for j in batch if j.first.output is not None]
        for j in batch:
            missing = no_output(j.first)
            if missing is not None:
                await self._record(j, failed(missing))
        if not ready:
            return
        rows = [grader_args(j.input, j.first.output or {}, j.dataset_output) for j in ready]
        grades = await self._grader.grade_many(ready[0].grader, rows)
        for j, judged in zip(ready, grades, strict=True):
            await self._record(j, judged)

    async def _record(self, j: PendingJudgement, judged: Judged) -> None:
        await asyncio.to_thread(self._store.record_judgement, j.eval_id, EvalJudgementRecorded(
            row_id=j.row_id, model=j.first.model, opponent=j.second.model if j.second else None,
            score=judged.score, winner=judged.winner, reasoning=judged.reasoning, error=judged.error,
            cost_usd=judged.cost_usd))

    async def _fail(self, eval_id: str, error: str) -> None:
        self._dropped.add(eval_id)
        if await asyncio.to_thread(self._store.fail, eval_id, error):
            log.warning("eval %s failed: %s", eval_id, error)

