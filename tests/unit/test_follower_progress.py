"""A follower's progress: per partition, what is handled and where the partition ended at the last fetch."""

from __future__ import annotations

from aiokafka import TopicPartition
from gateway.admin_api import _follower
from refinery.bus.progress import follower_progress, progress_message


class _Consumer:
    def __init__(self, ends: dict[int, int | None]) -> None:
        self._ends = ends

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition("logs", p) for p in self._ends} | {TopicPartition("other", 0)}

    def highwater(self, tp: TopicPartition) -> int | None:
        return self._ends[tp.partition]


def test_lag_is_the_records_between_what_is_handled_and_the_end() -> None:
    progress = follower_progress(_Consumer({0: 10, 1: 4, 2: None}), "logs", {0: 7, 1: 4})
    assert [(p.partition, p.done, p.high_water, p.lag) for p in progress] == [
        (0, 7, 10, 3), (1, 4, 4, 0), (2, 0, None, None)]
    shown = _follower(progress_message("log-ingest", progress, set_aside=2))
    assert shown["lag"] == 3 and shown["setAside"] == 2 and shown["caughtUp"] is False
    assert shown["partitions"][2] == {"partition": 2, "done": 0, "highWater": None, "lag": None}


def test_caught_up_needs_every_partition_seen_and_at_its_end() -> None:
    done = follower_progress(_Consumer({0: 5, 1: 0}), "logs", {0: 5})
    assert _follower(progress_message("rules", done, 0))["caughtUp"] is True
    unseen = follower_progress(_Consumer({0: 5, 1: None}), "logs", {0: 5})
    assert _follower(progress_message("rules", unseen, 0))["caughtUp"] is False
