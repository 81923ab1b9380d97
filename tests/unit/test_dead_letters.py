"""Dead letters: what a reader gives up on is set aside with its reason, the rest goes on, and a
set-aside record can be listed and replayed (as it was, or fixed)."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass

import orjson
import pytest
from dataset.log_import import RuleConsumer
from dataset.store import DatasetStore
from gateway.dead_letters import DeadLetterBook, Replayer, ReplayRefused, fixed_value
from log_ingest.ingest import Ingestor
from refinery.bus.dead_letters import DeadLetterSink
from refinery.config import DEAD_LETTERS_TOPIC, REQUEST_LOGS_TOPIC
from refinery.events.dead_letters import DEAD_LETTER_RECORDED, DeadLetterRecorded
from refinery.events.request_logs import METADATA_UPDATED, RECORDED, RequestLogRecorded, request_log_recorded
from refinery.runtime.memory_bus import MemoryBus
from refinery.runtime.subscriptions import EventDecoder


@dataclass
class Msg:
    """What a consumer gets from aiokafka: the parts the writers read."""

    value: bytes
    key: bytes
    partition: int = 0
    offset: int = 0


def _log(project: str, tag: str, **fields: object) -> bytes:
    data = {"source": "report", "received_at": 1.0, "model": "m", "status_code": 200,
            "req_payload": {"model": "m", "messages": [{"role": "user", "content": tag}]},
            "resp_payload": {"choices": [{"message": {"role": "assistant", "content": "ok"}}]},
            "metadata": {"tag": tag}, **fields}
    return request_log_recorded(project, RequestLogRecorded(**data)).to_bytes()  # type: ignore[arg-type]


def _letters(bus: MemoryBus) -> list[DeadLetterRecorded]:
    return [DeadLetterRecorded(**e.data) for e in bus.events(DEAD_LETTERS_TOPIC) if e.type == DEAD_LETTER_RECORDED]


def test_decoding_tells_a_broken_record_from_one_that_is_not_for_this_reader() -> None:
    decoder = EventDecoder("t", RECORDED)
    assert decoder.decode_checked(b"{not json")[1].startswith("undecodable record")
    assert decoder.decode_checked(b'{"type": 5}')[1] == "the envelope's type is not a string"
    broken = orjson.dumps({"event_id": "e", "type": RECORDED, "aggregate_id": "a", "project_id": "p",
                           "occurred_at": 1, "data": {"source": "report", "received_at": "soon"}})
    event, why = decoder.decode_checked(broken)
    assert event is None and "malformed request_log.recorded" in why and "received_at" in why
    assert decoder.decode_checked(orjson.dumps({"type": METADATA_UPDATED})) == (None, None)  # handled elsewhere
    assert decoder.decode_checked(orjson.dumps({"type": "future.event"})) == (None, None)  # a newer writer's
    event, why = decoder.decode_checked(_log("p", "fine"))
    assert why is None and event is not None and event.data.metadata == {"tag": "fine"}


async def test_the_sink_keeps_the_record_and_why_and_cuts_what_the_bus_cannot_take() -> None:
    bus = MemoryBus()
    producer = bus.producer(DEAD_LETTERS_TOPIC)
    producer.max_event_bytes = 100_000
    sink = DeadLetterSink(producer, "log-ingest")  # type: ignore[arg-type]
    record = _log("p1", "x")
    first = await sink.set_aside(topic=REQUEST_LOGS_TOPIC, reason="refused", value=record, key=b"p1",
                                 partition=2, offset=7)
    again = await sink.set_aside(topic=REQUEST_LOGS_TOPIC, reason="refused", value=record, key=b"p1",
                                 partition=2, offset=7)
    assert first == again  # the same record set aside twice (a crash in between) is one letter
    big = b"y" * 200_000
    await sink.set_aside(topic=REQUEST_LOGS_TOPIC, reason="huge", value=big, key=b"p1")
    letter, _, cut = _letters(bus)
    assert letter.value() == record and letter.key_bytes() == b"p1" and letter.reason == "refused"
    assert (letter.partition, letter.offset, letter.service) == (2, 7, "log-ingest")
    assert bus.events(DEAD_LETTERS_TOPIC)[0].project_id == "p1"  # read from the record's envelope
    assert cut.truncated and cut.value_bytes == 200_000 and len(cut.value()) < 100_000


class RefusingStore:
    """A log store that refuses any row whose metadata says `poison`, like a column it cannot hold."""

    def __init__(self, healthy: bool = True) -> None:
        self.rows: list[list] = []
        self.inserts = 0
        self.healthy = healthy
        self.offsets: dict[int, int] = {}

    def existing_ids(self, by_project: dict[str, list[str]]) -> set[tuple[str, str]]:
        return set()

    def insert_rows(self, rows: list[list]) -> None:
        self.inserts += 1
        if any(row[-1].get("tag") == "poison" for row in rows):
            raise ValueError("Value out of range for UInt32")
        self.rows.extend(rows)

    def load_offsets(self, topic: str) -> dict[int, int]:
        if not self.healthy:
            raise ConnectionError("the store is down")
        return self.offsets

    def save_offsets(self, topic: str, offsets: dict[int, int]) -> None:
        self.offsets = dict(offsets)


def _batch(*values: bytes) -> dict:
    from aiokafka import TopicPartition

    return {TopicPartition(REQUEST_LOGS_TOPIC, 0): [Msg(v, b"p1", 0, i) for i, v in enumerate(values)]}


async def test_log_ingest_bisects_a_refused_batch_and_sets_aside_only_the_bad_row() -> None:
    bus = MemoryBus()
    store = RefusingStore()
    sink = DeadLetterSink(bus.producer(DEAD_LETTERS_TOPIC), "log-ingest")  # type: ignore[arg-type]
    ingestor = Ingestor(store, "127.0.0.1:1", REQUEST_LOGS_TOPIC, dead_letters=sink)  # type: ignore[arg-type]
    ingestor._loop = asyncio.get_running_loop()
    values = [_log("p1", f"good-{i}") for i in range(7)]
    values.insert(3, _log("p1", "poison"))
    values.append(b"\xff not an event")
    await asyncio.to_thread(ingestor._store_batches, _batch(*values), {0: len(values)})
    assert sorted(row[-1]["tag"] for row in store.rows) == sorted(f"good-{i}" for i in range(7))
    assert store.offsets == {0: 9}  # the stream went on past both
    undecodable, refused = _letters(bus)  # set aside as met: the undecodable one while decoding
    assert refused.offset == 3 and "the log store refused it" in refused.reason and "UInt32" in refused.reason
    assert refused.value() == values[3]
    assert undecodable.offset == 8 and undecodable.reason.startswith("undecodable record")
    assert store.inserts <= 1 + 2 * 4  # bisection, not one insert per row
    await ingestor._consumer.stop()


async def test_log_ingest_retries_the_batch_when_the_store_itself_is_down() -> None:
    bus = MemoryBus()
    store = RefusingStore(healthy=False)
    sink = DeadLetterSink(bus.producer(DEAD_LETTERS_TOPIC), "log-ingest")  # type: ignore[arg-type]
    ingestor = Ingestor(store, "127.0.0.1:1", REQUEST_LOGS_TOPIC, dead_letters=sink)  # type: ignore[arg-type]
    ingestor._loop = asyncio.get_running_loop()
    with pytest.raises(ValueError, match="UInt32"):
        await asyncio.to_thread(ingestor._store_batches, _batch(_log("p1", "poison")), {0: 1})
    assert _letters(bus) == [] and store.offsets == {}  # nothing given up, nothing skipped
    await ingestor._consumer.stop()


async def test_the_rule_follower_sets_aside_a_log_it_cannot_read_and_imports_the_rest(tmp_path) -> None:
    store = DatasetStore(f"sqlite:///{tmp_path / 'dataset.db'}")
    dataset = store.datasets.create("p1", "d")
    store.import_rules.add("p1", dataset.id, [{"field": "model", "value": "m", "value_type": "string"}])
    bus = MemoryBus()
    sink = DeadLetterSink(bus.producer(DEAD_LETTERS_TOPIC), "dataset")  # type: ignore[arg-type]
    rules = RuleConsumer(store, "127.0.0.1:1", REQUEST_LOGS_TOPIC, dead_letters=sink)
    rules._loop = asyncio.get_running_loop()
    rules._rules = store.import_rules.by_project()
    five = _log("p1", "five", req_payload={"model": "m", "messages": 5})
    odd = _log("p1", "odd", status_code=200, metadata={"tag": "odd"}, model="m",
               req_payload={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
               resp_payload={"choices": [{"message": {"role": "assistant", "content": "ok"}}]})
    await asyncio.to_thread(rules._apply, _batch(_log("p1", "a"), five, odd, _log("p1", "b")), {0: 4})
    entries = list(store.entries.iter_rows("p1", dataset.id))
    assert len(entries) == 3  # `messages: 5` cannot train: skipped, the others imported
    assert store.load_offsets(REQUEST_LOGS_TOPIC) == {0: 4}
    await rules._consumer.stop()
    store.close()


async def test_the_rule_follower_sets_aside_a_record_its_matching_raises_on(tmp_path) -> None:
    store = DatasetStore(f"sqlite:///{tmp_path / 'dataset.db'}")
    dataset = store.datasets.create("p1", "d")
    store.import_rules.add("p1", dataset.id, [{"field": "statusCode", "value": "200", "value_type": "number"}])
    bus = MemoryBus()
    sink = DeadLetterSink(bus.producer(DEAD_LETTERS_TOPIC), "dataset")  # type: ignore[arg-type]
    rules = RuleConsumer(store, "127.0.0.1:1", REQUEST_LOGS_TOPIC, dead_letters=sink)
    rules._loop = asyncio.get_running_loop()
    rules._rules = store.import_rules.by_project()
    env = orjson.loads(_log("p1", "bad"))
    env["data"]["status_code"] = "two hundred"  # a writer that is not ours: matching cannot read it
    bad = orjson.dumps(env)
    await asyncio.to_thread(rules._apply, _batch(bad, _log("p1", "good")), {0: 2})
    [letter] = _letters(bus)
    assert letter.offset == 0 and "matching import rules failed" in letter.reason and letter.value() == bad
    assert len(list(store.entries.iter_rows("p1", dataset.id))) == 1
    await rules._consumer.stop()
    store.close()


async def test_a_listed_letter_replays_as_it_was_or_fixed_and_the_replays_are_recorded() -> None:
    bus = MemoryBus()
    book = DeadLetterBook()
    bus.subscribe(DEAD_LETTERS_TOPIC, book.subscriptions)
    producer = bus.producer(DEAD_LETTERS_TOPIC)
    producer.max_event_bytes = 200_000
    sink = DeadLetterSink(producer, "log-ingest")  # type: ignore[arg-type]
    record = _log("p1", "x")
    letter_id = await sink.set_aside(topic=REQUEST_LOGS_TOPIC, reason="refused", value=record, key=b"p1",
                                     partition=0, offset=3)
    await sink.set_aside(topic=REQUEST_LOGS_TOPIC, reason="too big", value=b"z" * 300_000, key=b"p2")
    assert [letter.recorded.reason for letter in book.find()] == ["refused", "too big"]
    assert [letter.project_id for letter in book.find(project_id="p1")] == ["p1"]
    shown = book.letters[letter_id].to_api()
    assert shown["value"]["data"]["metadata"] == {"tag": "x"} and shown["key"] == "p1" and shown["replays"] == []
    replayer = Replayer(sink, {REQUEST_LOGS_TOPIC: bus.producer(REQUEST_LOGS_TOPIC)},  # type: ignore[dict-item]
                        "127.0.0.1:1", None, {REQUEST_LOGS_TOPIC}, 1_000_000)  # type: ignore[arg-type]
    await replayer.replay(book.letters[letter_id], None)
    fixed = orjson.dumps({"fixed": True})
    await replayer.replay(book.letters[letter_id], fixed)
    assert [r.value for r in bus.records(REQUEST_LOGS_TOPIC)] == [record, fixed]
    assert [r.key for r in bus.records(REQUEST_LOGS_TOPIC)] == [b"p1", b"p1"]
    assert [r["fixed"] for r in book.letters[letter_id].replays] == [False, True]
    assert book.find(replayed=False)[0].recorded.reason == "too big"
    with pytest.raises(ReplayRefused, match="too large to keep whole"):
        await replayer.replay(book.find(replayed=False)[0], None)


def test_a_replay_body_gives_the_fixed_record() -> None:
    assert fixed_value(None) is None and fixed_value({}) is None
    assert fixed_value({"value": {"a": 1}}) == b'{"a":1}'
    assert fixed_value({"valueBase64": base64.b64encode(b"\x00raw").decode()}) == b"\x00raw"
    with pytest.raises(ReplayRefused, match="base64"):
        fixed_value({"valueBase64": "not base64!"})
