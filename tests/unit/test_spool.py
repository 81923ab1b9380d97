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
