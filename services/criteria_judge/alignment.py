"""Background judging of alignment sets: every row judged by every version of its criterion.

The work is whatever (row, version) pairs of live criteria have no verdict yet, read from the store;
so rows arriving, a version being published and a restart all mean the same thing (pairs are
missing, they get judged), and nothing is kept in memory that a restart could lose. Each verdict is
recorded once (`judgement.recorded`; the store refuses a second one for the same pair), and a
deleted criterion's pairs stop being judged.

A judgement that fails is tried once more, then recorded as ERROR with why: it is not retried
forever. A judge that cannot be reached at all (proxy-router or inference down) is not the pair's
fault: nothing is recorded, the pair is set aside for a while with a growing delay, and the other
pairs go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Literal

import orjson
from refinery.events.criteria import JudgementRecorded

from criteria_judge.judging import JudgeError, Judges, Target
from criteria_judge.store import CriteriaStore, PendingPair

log = logging.getLogger("refinery.criteria_judge")

Outcome = Literal["recorded", "unreachable", "skipped"]
_MAX_DEFER_S = 60.0


class AlignmentWorker:
    def __init__(self, store: CriteriaStore, judges: Judges, concurrency: int, *, retry_delay_s: float = 1.0,
                 idle_poll_s: float = 30.0) -> None:
        self._store = store
        self._judges = judges
        self._concurrency = concurrency
        self._retry_delay_s = retry_delay_s
        self._idle_poll_s = idle_poll_s
        self._wake = asyncio.Event()
        self._deferred: dict[tuple[str, int], tuple[float, float]] = {}  # pair -> (retry at, delay)
        self._dropped: set[str] = set()  # criteria deleted while their pairs were queued here

    def wake(self) -> None:
        """There may be new work (rows added, a version published)."""
        self._wake.set()

    def forget(self, criterion_id: str) -> None:
        """The criterion was deleted: its pairs already queued here are not judged."""
        self._dropped.add(criterion_id)

    async def run(self) -> None:
        """The kernel's background task: judge what is missing, then wait for news (or a poll)."""
        while True:
            self._wake.clear()
            try:
                pairs = await self._due()
                if pairs:
                    await self.judge_batch(pairs)
                    continue
            except asyncio.CancelledError:
                raise
            except Exception:  # the database hiccuped: try again after a pause, never stop judging
                log.exception("background judging failed; trying again")
                await asyncio.sleep(self._retry_delay_s)
                continue
            await self._sleep(self._next_wait())

    async def _due(self) -> list[PendingPair]:
        """Pending pairs, without those set aside until later."""
        now = time.monotonic()
        waiting = {k for k, (at, _) in self._deferred.items() if at > now}
        limit = self._concurrency * 4
        asked = limit + len(waiting)
        pairs = await asyncio.to_thread(self._store.pending, asked)
        if len(pairs) < asked:  # every pending pair is in hand: a set-aside one that is not was judged or deleted
            live = {(p.row_id, p.spec.version) for p in pairs}
            for key in [k for k in self._deferred if k not in live]:
                del self._deferred[key]
        return [p for p in pairs if (p.row_id, p.spec.version) not in waiting][:limit]

    def _next_wait(self) -> float:
        if not self._deferred:
            return self._idle_poll_s
        soonest = min(at for at, _ in self._deferred.values()) - time.monotonic()
        return max(0.05, min(self._idle_poll_s, soonest))

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def judge_batch(self, pairs: list[PendingPair]) -> list[Outcome]:
        sem = asyncio.Semaphore(self._concurrency)

        async def one(pair: PendingPair) -> Outcome:
            async with sem:
                return await self.judge_pair(pair)

        return list(await asyncio.gather(*(one(p) for p in pairs)))

    async def judge_pair(self, pair: PendingPair) -> Outcome:
        if pair.criterion_id in self._dropped:
            return "skipped"
        target = Target(pair.project_id, pair.name, pair.spec)
        judged_input, output = orjson.loads(pair.input_json), orjson.loads(pair.output_json)
        key = (pair.row_id, pair.spec.version)
        error = ""
        for attempt in (1, 2):
            try:
                verdict = await self._judges.judge(target, judged_input, output)
            except JudgeError as exc:
                if exc.kind == "unreachable":
                    if key not in self._deferred:  # said once per pair, not at every try
                        log.warning("judging %s row %s waits: %s", target.label, pair.row_id, exc.message)
                    self._defer(key)
                    return "unreachable"
                error = exc.message
            except Exception as exc:  # a bug must not loop forever on the same pair: record it
                log.exception("judging %s row %s failed", target.label, pair.row_id)
                error = f"{type(exc).__name__}: {exc}"
            else:
                self._deferred.pop(key, None)
                recorded = JudgementRecorded(row_id=pair.row_id, version=pair.spec.version,
                                             judgement=verdict.judgement,
                                             score=verdict.score, explanation=verdict.explanation)
                return await self._record(pair, recorded)
            if attempt == 1:
                await asyncio.sleep(self._retry_delay_s)
        self._deferred.pop(key, None)
        return await self._record(pair, JudgementRecorded(row_id=pair.row_id, version=pair.spec.version,
                                                          judgement="ERROR", score=0.0, error=error[:2000]))

    def _defer(self, key: tuple[str, int]) -> None:
        _, delay = self._deferred.get(key, (0.0, 0.5))
        delay = min(_MAX_DEFER_S, delay * 2)
        self._deferred[key] = (time.monotonic() + delay, delay)

    async def _record(self, pair: PendingPair, verdict: JudgementRecorded) -> Outcome:
        fresh = await asyncio.to_thread(self._store.record_judgement, pair, verdict)
        return "recorded" if fresh else "skipped"
