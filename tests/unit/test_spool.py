"""The spool keeps every acknowledged record across restarts and replays in order."""

from __future__ import annotations

from pathlib import Path

from refinery.bus.spool import Spool


def test_records_survive_reopen_and_replay_in_order(tmp_path: Path):
    spool = Spool(tmp_path)
    for i in range(5):
        spool.append(b"k%d" % i, b"value-%d" % i)
    spool.close()
    reopened = Spool(tmp_path)
    records = list(reopened.pending())
    assert [(k, v) for _, k, v in records] == [(b"k%d" % i, b"value-%d" % i) for i in range(5)]
    reopened.mark_replayed(records[2][0])
    assert [k for _, k, _ in reopened.pending()] == [b"k3", b"k4"]
    reopened.mark_replayed(records[-1][0])
    assert reopened.is_empty()
    reopened.reset_if_drained()
    assert reopened.path.stat().st_size == 0


def test_torn_tail_is_dropped(tmp_path: Path):
    spool = Spool(tmp_path)
    spool.append(b"a", b"1")
    spool.append(b"b", b"2")
    spool.close()
    data = spool.path.read_bytes()
    spool.path.write_bytes(data[:-1])  # a crash mid-write of the last (unacknowledged) record
    assert [k for _, k, _ in Spool(tmp_path).pending()] == [b"a"]


def test_a_torn_tail_is_quarantined_at_open_and_later_records_stay_reachable(tmp_path) -> None:
    from refinery.bus.spool import Spool

    spool = Spool(tmp_path)
    spool.append(b"k", b"acknowledged")
    spool.close()
    with open(tmp_path / "spool.bin", "ab") as f:  # a crash mid-write: half a frame
        f.write(b"\x40\x00\x00\x00\x01\x02\x03\x04\x01\x00k-partial")
    again = Spool(tmp_path)
    assert again.quarantined is not None and again.quarantined.read_bytes().endswith(b"k-partial")
    again.append(b"k", b"after the crash")
    assert [v for _, _, v in again.pending()] == [b"acknowledged", b"after the crash"]
    again.close()


def test_an_append_that_fails_half_way_leaves_no_torn_frame(tmp_path, monkeypatch) -> None:
    import os

    import pytest
    from refinery.bus.spool import Spool

    spool = Spool(tmp_path)
    spool.append(b"k", b"one")
    real_fsync = os.fsync

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        spool.append(b"k", b"never acknowledged")
    monkeypatch.setattr(os, "fsync", real_fsync)
    spool.append(b"k", b"two")
    assert [v for _, _, v in spool.pending()] == [b"one", b"two"]
    spool.close()


def test_dead_letters_keep_the_record_and_the_reason(tmp_path) -> None:
    from refinery.bus.spool import DeadLetters

    letters = DeadLetters(tmp_path)
    letters.add(b"p1", b"x" * 100, "too large for the bus")
    letters.add(b"p2", b"{}", "refused by the broker")
    assert DeadLetters(tmp_path).read() == [(b"p1", "too large for the bus", b"x" * 100),
                                            (b"p2", "refused by the broker", b"{}")]


async def test_a_producer_whose_spool_is_full_refuses_instead_of_acknowledging(tmp_path, monkeypatch) -> None:
    """With the bus unreachable and the spool's disk full, publish raises NotKept (no_space) and
    keeps nothing; once space returns the same producer spools again."""
    import os

    import pytest
    from refinery.bus.producer import DurableProducer, NotKept

    producer = DurableProducer("127.0.0.1:1", "t", tmp_path)  # never started: every record goes to the spool
    real_fsync = os.fsync

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(NotKept, match="no space left") as refused:
        await producer.publish(b"k", b"never acknowledged")
    assert refused.value.no_space
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert await producer.publish(b"k", b"kept") is None  # spooled: durable, acknowledged
    assert [v for _, _, v in producer._spool.pending()] == [b"kept"]
