"""The service kernel: start-up unwinds what started when a part fails; shutdown is ordered.

And typed subscriptions: handlers get the catalogue's model; unknown and malformed records are
skipped and counted, never raised; the in-memory bus delivers through the same path.
"""

from __future__ import annotations

import asyncio
import socket

import grpc
import orjson
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from refinery.config import ServiceSettings
from refinery.events import models as ev
from refinery.events.envelope import Envelope
from refinery.runtime.kernel import Kernel, StartupFailed
from refinery.runtime.memory_bus import MemoryBus
from refinery.runtime.subscriptions import Event, Subscriptions

TOPIC = "refinery.models"


class Part:
    def __init__(self, name: str, journal: list[str], fail_start: bool = False) -> None:
        self.name = name
        self.journal = journal
        self.fail_start = fail_start

    async def start(self) -> None:
        if self.fail_start:
            raise RuntimeError(f"{self.name} cannot start")
        self.journal.append(f"start {self.name}")

    async def stop(self) -> None:
        self.journal.append(f"stop {self.name}")


def _kernel(tmp_path) -> Kernel[ServiceSettings]:
    return Kernel("test-service", ServiceSettings(data_dir=tmp_path))


async def test_a_failed_part_unwinds_everything_started_before_it(tmp_path) -> None:
    journal: list[str] = []
    k = _kernel(tmp_path)

    async def build(k: Kernel[ServiceSettings]) -> None:
        await k.part("a", Part("a", journal))
        await k.part("b", Part("b", journal))
        await k.part("c", Part("c", journal, fail_start=True))
        journal.append("never reached")

    with pytest.raises(StartupFailed, match="c cannot start"):
        await k.serve(build, signals=False)
    assert journal == ["start a", "start b", "stop b", "stop a"]
    assert k.stopped == ["b", "a"]


async def test_a_taken_grpc_port_unwinds_the_started_parts(tmp_path) -> None:
    journal: list[str] = []
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    k = _kernel(tmp_path)

    async def build(k: Kernel[ServiceSettings]) -> None:
        await k.part("store", Part("store", journal))
        k.task("worker", asyncio.sleep(3600))
        await k.grpc("127.0.0.1", port)

    try:
        with pytest.raises(StartupFailed):
            await k.serve(build, signals=False)
    finally:
        taken.close()
    assert k.started == ["store", "worker"]
    assert k.stopped == ["worker", "store"]
    assert journal == ["start store", "stop store"]


async def test_shutdown_marks_not_serving_before_stopping_parts_in_reverse(tmp_path) -> None:
    journal: list[str] = []
    k = _kernel(tmp_path)
    ports: list[int] = []

    async def health() -> str:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{ports[0]}") as channel:
            resp = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
            return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)

    class Probe(Part):
        async def stop(self) -> None:
            self.journal.append(f"stop {self.name} while {await health()}")

    gate = asyncio.Event()

    async def build(k: Kernel[ServiceSettings]) -> None:
        await k.part("first", Part("first", journal))
        ports.append((await k.grpc("127.0.0.1", 0)).port)
        await k.part("probe", Probe("probe", journal))  # stops while the gRPC server still answers
        k.ready_when(gate.wait)

    serving = asyncio.create_task(k.serve(build, signals=False))
    for _ in range(500):
        if ports:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    assert await health() == "NOT_SERVING"  # held back by ready_when
    gate.set()
    await asyncio.wait_for(k.ready.wait(), 5)
    assert await health() == "SERVING"
    k.stop()
    await asyncio.wait_for(serving, 10)
    assert journal == ["start first", "start probe", "stop probe while NOT_SERVING", "stop first"]
    assert k.stopped == ["probe", f"grpc :{ports[0]}", "first"]


async def test_stop_failures_are_logged_and_the_rest_still_stop(tmp_path, caplog) -> None:
    journal: list[str] = []
    k = _kernel(tmp_path)

    class Broken(Part):
        async def stop(self) -> None:
            raise RuntimeError("stuck")

    async def build(k: Kernel[ServiceSettings]) -> None:
        await k.part("a", Part("a", journal))
        await k.part("broken", Broken("broken", journal))

    serving = asyncio.create_task(k.serve(build, signals=False))
    await asyncio.wait_for(k.ready.wait(), 5)
    k.stop()
    await asyncio.wait_for(serving, 5)
    assert journal == ["start a", "start broken", "stop a"]
    assert "stopping broken failed" in caplog.text


# ---- typed subscriptions and the in-memory bus ------------------------------------------------


def _created(model_id: str = "m1", dataset_id: str = "d1") -> Envelope:
    data = ev.ModelCreated(slug="s", dataset_id=dataset_id, base_model="b", training_config={})
    return ev.model_event("p1", model_id, 1, ev.MODEL_CREATED, data)


async def test_handlers_receive_the_catalogue_model() -> None:
    seen: list[Event[ev.ModelCreated]] = []
    subs = Subscriptions("t")

    @subs.on(ev.MODEL_CREATED)
    async def created(event: Event[ev.ModelCreated]) -> None:
        seen.append(event)

    bus = MemoryBus()
    bus.subscribe(TOPIC, subs)
    env = _created()
    await bus.publish(TOPIC, env)
    assert len(seen) == 1
    assert isinstance(seen[0].data, ev.ModelCreated)
    assert seen[0].data.dataset_id == "d1"
    assert (seen[0].event_id, seen[0].aggregate_id, seen[0].project_id) == (env.event_id, "m1", "p1")
    assert subs.stats.handled == 1


async def test_unknown_unsubscribed_and_malformed_records_are_skipped_and_counted(caplog) -> None:
    subs = Subscriptions("t")
    handled: list[str] = []

    @subs.on(ev.MODEL_CREATED)
    async def created(event: Event[ev.ModelCreated]) -> None:
        handled.append(event.event_id)

    bus = MemoryBus()
    bus.subscribe(TOPIC, subs)
    await bus.publish(TOPIC, Envelope(type="model.teleported", aggregate_id="m", project_id="p", data={}))
    await bus.publish(TOPIC, ev.model_event("p", "m", 2, ev.MODEL_STATUS_CHANGED, ev.ModelStatusChanged(status="X")))
    await bus.publish(TOPIC, b"{not json")
    await bus.publish(TOPIC, orjson.dumps({"no": "type"}))
    bad = _created().model_dump()
    bad["data"] = {"slug": 5}  # fails ModelCreated
    await bus.publish(TOPIC, orjson.dumps(bad))
    await bus.publish(TOPIC, _created("m9"))  # and the stream goes on
    assert subs.stats.unknown == 1 and subs.stats.unknown_types == {"model.teleported"}
    assert subs.stats.ignored == 1
    assert subs.stats.malformed == 3
    assert len(handled) == 1
    assert f"{TOPIC}:0:4" in caplog.text  # the malformed record is named by its position


async def test_a_handler_error_reaches_the_caller() -> None:
    subs = Subscriptions("t")

    @subs.on(ev.MODEL_CREATED)
    async def created(event: Event[ev.ModelCreated]) -> None:
        raise ValueError("database down")

    bus = MemoryBus()
    bus.subscribe(TOPIC, subs)
    with pytest.raises(ValueError, match="database down"):
        await bus.publish(TOPIC, _created())
    assert subs.stats.handled == 0


def test_only_catalogued_types_can_be_subscribed_and_only_once() -> None:
    subs = Subscriptions("t")
    with pytest.raises(ValueError, match="not in the event catalogue"):
        subs.on("model.teleported")
    subs.on(ev.MODEL_CREATED)(lambda e: asyncio.sleep(0))
    with pytest.raises(ValueError, match="already handles"):
        subs.on(ev.MODEL_CREATED)(lambda e: asyncio.sleep(0))
