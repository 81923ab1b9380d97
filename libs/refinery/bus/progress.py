"""How far a follower of a topic has got: per partition, the offset below which every record is handled
and the partition's end as the follower's last fetch saw it.

The end is the consumer's `highwater()` after a fetch (correct on Tansu, unlike `end_offsets()`), so
a follower that is caught up shows a lag of 0 and one that is stuck shows how many records wait
behind the one it cannot get past. What the pipeline-health route and tests read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition


@dataclass(frozen=True, slots=True)
class PartitionProgress:
    partition: int
    done: int  # every record below this offset is handled (stored, matched or set aside)
    high_water: int | None  # the partition's end at the last fetch; None before the first

    @property
    def lag(self) -> int | None:
        return None if self.high_water is None else max(0, self.high_water - self.done)


def follower_progress(consumer: Any, topic: str, done: dict[int, int]) -> list[PartitionProgress]:
    """The progress of an assigned consumer on `topic`, by partition."""
    partitions = sorted(tp.partition for tp in consumer.assignment() if tp.topic == topic)
    return [PartitionProgress(p, done.get(p, 0), consumer.highwater(TopicPartition(topic, p))) for p in partitions]


def progress_message(name: str, partitions: list[PartitionProgress], set_aside: int) -> Any:
    """The gRPC `FollowerProgress` of a follower."""
    from refinery.rpc import logs_pb2

    return logs_pb2.FollowerProgress(name=name, set_aside=set_aside, partitions=[
        logs_pb2.PartitionProgress(partition=p.partition, done=p.done,
                                   high_water=-1 if p.high_water is None else p.high_water) for p in partitions])


def progress_from_message(message: Any) -> list[PartitionProgress]:
    """The partitions of a gRPC `FollowerProgress` (`progress_message` read back)."""
    return [PartitionProgress(p.partition, p.done, None if p.high_water < 0 else p.high_water)
            for p in message.partitions]
