"""criteria-judge as it runs: its own `build` under the service kernel, on real Tansu, with a stand-in
for proxy-router in front of the fake upstream's deterministic judge.

Create a criterion, judge with it (PASS and FAIL), import an alignment set, publish v2, and watch both
versions judge every row in the background; stop the service while that is under way and start it
again: it finishes what was missing, judging no (row, version) twice; labels and stats come out
exactly as computed here from the per-row verdicts; and every event reached `refinery.criteria`,
keyed by the criterion id.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from criteria_judge.main import build
from criteria_judge.settings import CriteriaSettings
from criteria_judge.store import CriteriaStore
from refinery.events import criteria as ev
from refinery.grpc_server import client_channel
from refinery.rpc import criteria_pb2, criteria_pb2_grpc
from refinery.runtime.kernel import Kernel
from refinery.stack.process import free_port
from refinery.stores import eventstore

from tests.unit.test_criteria_servicer import NO_PARIS, NO_ROME, TOKEN, all_judged, backends, jsonl, msg, until

ANSWERS = ["Paris", "Rome", "Paris, then Rome", "Oslo"]
LABELS = ["FAIL", "PASS", None, "FAIL", "PASS", None, "FAIL", "PASS", "PASS", "FAIL"]
ROWS = [(f"{ANSWERS[i % 4]} ({i})", LABELS[i % len(LABELS)]) for i in range(20)]


def _verdict(answer: str, word: str) -> str:
    return "FAIL" if word.lower() in answer.lower() else "PASS"


def _expected(labels: list[str | None], word: str) -> tuple[int, int, int, int]:
    tp = fp = fn = tn = 0
    for (answer, _), human in zip(ROWS, labels, strict=True):
        judge = _verdict(answer, word)
        if human not in ("PASS", "FAIL"):
            continue
        tp += judge == "FAIL" and human == "FAIL"
        fp += judge == "FAIL" and human == "PASS"
        fn += judge == "PASS" and human == "FAIL"
        tn += judge == "PASS" and human == "PASS"
    return tp, fp, fn, tn


@contextlib.asynccontextmanager
async def running(settings: CriteriaSettings) -> AsyncIterator[Kernel[CriteriaSettings]]:
    kernel = Kernel("criteria-judge", settings)
    task = asyncio.create_task(kernel.serve(build, signals=False))
    ready = asyncio.create_task(kernel.ready.wait())
    await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED, timeout=60)
    if task.done():
        task.result()  # start-up failed: raise why
    assert kernel.ready.is_set(), "criteria-judge did not become ready"
    try:
        yield kernel
    finally:
        kernel.stop()
        await asyncio.wait_for(task, 30)


async def _topic_events(bootstrap: str, topic: str, partitions: int, want: int) -> list[tuple[bytes, dict]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, fetch_max_wait_ms=50)
    await consumer.start()
    got: list[tuple[bytes, dict]] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        for _ in range(150):
            for msgs in (await consumer.getmany(timeout_ms=200)).values():
                got += [(m.key, orjson.loads(m.value)) for m in msgs]
            if len({e["event_id"] for _, e in got}) >= want:
                break
    finally:
        await consumer.stop()
    return got


async def test_judging_alignment_and_a_restart_mid_judging(tansu, tmp_path: Path) -> None:
    project = f"p-{uuid.uuid4().hex[:8]}"
    topic = f"test.criteria-{uuid.uuid4().hex[:8]}"
    async with backends() as b:
        settings = CriteriaSettings(
            data_dir=tmp_path, bus_bootstrap=tansu.bootstrap, internal_token=TOKEN, criteria_topic=topic,
            REFINERY_CRITERIA_GRPC_PORT=free_port(), proxy_router_url=b.proxy_url, registry_grpc=b.grpc_target,
            dataset_grpc=b.grpc_target, inference_grpc=b.grpc_target, alignment_concurrency=2)
        target = f"127.0.0.1:{settings.grpc_port}"
        async with running(settings), client_channel(target) as channel:
            stub = criteria_pb2_grpc.CriteriaStub(channel)
            created = await stub.CreateCriterion(criteria_pb2.CreateCriterionRequest(
                project_id=project, name="capitals", prompt=NO_PARIS, templated_variables=["output"],
                templated_variables_given=True))
            failed = await stub.Judge(criteria_pb2.JudgeRequest(project_id=project, criterion_id="capitals",
                                                               output_json=msg("Paris, of course")))
            passed = await stub.Judge(criteria_pb2.JudgeRequest(project_id=project, criterion_id="capitals@v1",
                                                               output_json=msg("Rome")))
            assert (failed.judgement, failed.score, failed.explanation) == ("FAIL", 0.0, 'The output contains "Paris".')
            assert (passed.judgement, passed.score) == ("PASS", 1.0)
            assert b.proxy.requests[-1]["body"]["metadata"] == {"op_criterion": "capitals@v1"}

            b.proxy.delay_ms = 120  # slow enough to stop the service half-way through
            added = await stub.AddAlignmentRows(criteria_pb2.AddAlignmentRowsRequest(
                project_id=project, name="capitals", jsonl=jsonl(ROWS)))
            assert added.added == 20 and list(added.errors) == []
            v2 = await stub.UpdateCriterion(criteria_pb2.UpdateCriterionRequest(
                project_id=project, name="capitals", prompt=NO_ROME))
            assert [v.version for v in v2.versions] == [1, 2]

            async def some_judged() -> bool:
                rows = (await stub.ListAlignmentRows(criteria_pb2.ListAlignmentRowsRequest(
                    project_id=project, name="capitals", version=1, limit=100))).rows
                return sum(r.HasField("judge") for r in rows) >= 2

            await until(some_judged)
        # stopped mid-judging: some pairs have a verdict, others not
        stopped = CriteriaStore(settings.db_url())
        judged_before = stopped.judgement_count([created.id])
        stopped.close()
        assert 0 < judged_before < 40

        b.proxy.delay_ms = 0
        await asyncio.sleep(0.3)  # a judge call cut off by the stop may still reach the stand-in: count it too
        asked_before = len(b.proxy.requests)
        async with running(settings), client_channel(target) as channel:
            stub = criteria_pb2_grpc.CriteriaStub(channel)
            v1_rows = (await all_judged(stub, project, "capitals", 1)).rows
            v2_rows = (await all_judged(stub, project, "capitals", 2)).rows
            assert [r.judge.judgement for r in v1_rows] == [_verdict(a, "Paris") for a, _ in ROWS]
            assert [r.judge.judgement for r in v2_rows] == [_verdict(a, "Rome") for a, _ in ROWS]
            # the restart judged exactly the pairs that had no verdict: none that had one was asked again
            assert len(b.proxy.requests) - asked_before == 40 - judged_before

            labels = [label for _, label in ROWS]
            for i, label in ((2, "FAIL"), (5, "SKIP"), (0, "PASS"), (9, None)):
                row = await stub.LabelRow(criteria_pb2.LabelRowRequest(
                    project_id=project, name="capitals", row_id=v1_rows[i].id, human_judgement=label or ""))
                assert row.human_judgement == (label or "")
                labels[i] = label
            for version, word in ((1, "Paris"), (2, "Rome")):
                s = await stub.Stats(criteria_pb2.StatsRequest(project_id=project, name="capitals", version=version))
                tp, fp, fn, tn = _expected(labels, word)
                assert (s.true_positives, s.false_positives, s.false_negatives, s.true_negatives) == (tp, fp, fn, tn)
                assert s.precision == pytest.approx(tp / (tp + fp)) and s.recall == pytest.approx(tp / (tp + fn))
                p, r = tp / (tp + fp), tp / (tp + fn)
                assert s.f1 == pytest.approx(2 * p * r / (p + r))
                assert (s.pending, s.labeled, s.total) == (0, sum(x in ("PASS", "FAIL") for x in labels), 20)
            latest = await stub.Stats(criteria_pb2.StatsRequest(project_id=project, name="capitals"))
            assert latest.version == 2

        done = CriteriaStore(settings.db_url())
        try:
            assert done.judgement_count([created.id]) == 40
            with done.engine.connect() as conn:
                events = eventstore.load(conn, created.id)
        finally:
            done.close()
        recorded = [e for e in events if e.type == ev.JUDGEMENT_RECORDED]
        assert len(recorded) == 40
        assert len({(e.data["row_id"], e.data["version"]) for e in recorded}) == 40  # no pair judged twice
        assert [e.version for e in events] == list(range(1, len(events) + 1))

    on_bus = await _topic_events(tansu.bootstrap, topic, settings.topic_partitions, len(events))
    mine = {e["event_id"]: (key, e) for key, e in on_bus if e["aggregate_id"] == created.id}
    assert set(mine) == {e.event_id for e in events}  # the outbox published every event (at least once)
    assert {key for key, _ in mine.values()} == {created.id.encode()}
    types = [e["type"] for _, e in sorted(mine.values(), key=lambda x: x[1]["version"])]
    assert types[:3] == [ev.CRITERION_CREATED, ev.ALIGNMENT_ROWS_ADDED, ev.CRITERION_VERSION_PUBLISHED]
    assert types.count(ev.ALIGNMENT_ROW_LABELED) == 4
