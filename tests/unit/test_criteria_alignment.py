"""Background judging: every (row, version) judged once; a failing judge is tried once more, then its
ERROR recorded; a judge that cannot be reached records nothing, waits, and does not hold up the rest."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from criteria_judge.alignment import AlignmentWorker
from criteria_judge.judging import JudgeError, Judges, Target, Usage, Verdict
from criteria_judge.store import CriteriaStore, NewRow
from refinery.events import criteria as ev
from refinery.stores import eventstore


def _spec(model: str) -> ev.CriterionVersionSpec:
    return ev.CriterionVersionSpec(version=1, prompt="p", judge_model=model, templated_variables=["output"])


class ScriptedJudge:
    """Judges by the judge model's name: `ok` passes outputs without "bad"; `flaky` fails once per output
    and then works; `broken` always fails; `away` cannot be reached until `back` is set."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self.back = False

    async def __call__(self, target: Target, judged_input: dict[str, Any], output: dict[str, Any]) -> Verdict:
        model, text = target.spec.judge_model, output["content"]
        self.calls[(model, text)] += 1
        if model == "away" and not self.back:
            raise JudgeError("unreachable", "proxy-router unreachable: ClientConnectorError")
        if model == "broken" or (model == "flaky" and self.calls[(model, text)] == 1):
            raise JudgeError("upstream", f"judge model {model} answered 500: boom")
        return Verdict(0.0 if "bad" in text else 1.0, f"judged {text}", Usage(total_tokens=3))


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[CriteriaStore, ScriptedJudge, AlignmentWorker]]:
    store = CriteriaStore(f"sqlite:///{tmp_path / 'c.db'}")
    judge = ScriptedJudge()
    worker = AlignmentWorker(store, Judges(judge, judge, 5.0), 2, retry_delay_s=0.01, idle_poll_s=0.2)
    task = asyncio.create_task(worker.run())
    yield store, judge, worker
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    store.close()


def _add(store: CriteriaStore, name: str, model: str, texts: list[str]) -> str:
    criterion = store.create("p", name, _spec(model))
    store.add_rows("p", name, [NewRow({"messages": []}, {"role": "assistant", "content": t}) for t in texts],
                   source="jsonl", max_event_bytes=1 << 20)
    return criterion.id


async def _verdicts(store: CriteriaStore, name: str, count: int, timeout_s: float = 10.0) -> list[tuple]:
    deadline = time.monotonic() + timeout_s
    while True:
        rows, _, _ = store.rows("p", name, None, 100, 0)
        judged = [(orjson.loads(r.output_json)["content"], r.judge.judgement, r.judge.error) for r in rows if r.judge]
        if len(judged) >= count:
            return judged
        assert time.monotonic() < deadline, f"only {judged} judged"
        await asyncio.sleep(0.02)


async def test_a_failing_judge_is_tried_twice_then_recorded_as_error(setup) -> None:
    store, judge, worker = setup
    _add(store, "flaky", "flaky", ["fine", "bad"])
    _add(store, "broken", "broken", ["x"])
    worker.wake()
    assert sorted(await _verdicts(store, "flaky", 2)) == [("bad", "FAIL", None), ("fine", "PASS", None)]
    assert await _verdicts(store, "broken", 1) == [("x", "ERROR", "judge model broken answered 500: boom")]
    assert judge.calls == {("flaky", "fine"): 2, ("flaky", "bad"): 2, ("broken", "x"): 2}
    await asyncio.sleep(0.3)  # idle polls find nothing more to do: an ERROR is not retried forever
    assert judge.calls[("broken", "x")] == 2


async def test_an_unreachable_judge_records_nothing_and_does_not_hold_up_the_others(setup) -> None:
    store, judge, worker = setup
    away_id = _add(store, "away", "away", [f"a{i}" for i in range(12)])  # more than one batch of work
    _add(store, "ok", "ok", ["good", "bad"])
    worker.wake()
    assert sorted(await _verdicts(store, "ok", 2)) == [("bad", "FAIL", None), ("good", "PASS", None)]
    rows, _, _ = store.rows("p", "away", None, 100, 0)
    assert all(r.judge is None for r in rows)
    assert store.judgement_count([away_id]) == 0
    judge.back = True
    judged = await _verdicts(store, "away", 12)
    assert {j for _, j, _ in judged} == {"PASS"}
    with store.engine.connect() as conn:
        recorded = [e for e in eventstore.load(conn, away_id) if e.type == ev.JUDGEMENT_RECORDED]
    assert len(recorded) == 12 == len({e.data["row_id"] for e in recorded})
