"""An upload fails its bad lines, not the file: too deep, too long, no newline at all.

The processor runs against a SQLite dataset store and an in-memory object that hands out its
bytes in small chunks, so lines cross chunk boundaries the way they do when streamed from S3.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from dataset.store import DatasetStore
from dataset.upload_lines import MAX_LINE_DEPTH, Line, split_lines, too_long
from dataset.uploads import UploadProcessor
from refinery.events.datasets import ENTRIES_ADDED
from refinery.stores import eventstore
from refinery.wire.json_depth import nests_deeper_than

MAX_LINE = 1024


def _good(i: int) -> bytes:
    return orjson.dumps({"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]})


def _deep(depth: int) -> bytes:
    """A valid entry whose whole line nests `depth` levels (the line's object is level 1)."""
    inner = b"[" * (depth - 5) + b"]" * (depth - 5)
    return (b'{"messages":[{"role":"user","content":"deep"},{"role":"assistant","content":"ok"}],'
            b'"metadata":{"k":"v"},"tools":[{"type":"function","function":{"name":"f","parameters":'
            b'{"type":"object","x":' + inner + b"}}}]}")


class _Objects:
    """The object store's read side: one object, streamed in chunks of `chunk` bytes."""

    def __init__(self, data: bytes, chunk: int = 100) -> None:
        self.data, self.chunk = data, chunk

    def iter_chunks(self, key: str, chunk_size: int = 0, offset: int = 0) -> Iterator[bytes]:
        for i in range(offset, len(self.data), self.chunk):
            yield self.data[i:i + self.chunk]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DatasetStore]:
    s = DatasetStore(f"sqlite:///{tmp_path / 'dataset.db'}")
    yield s
    s.engine.dispose()


def _upload(
    store: DatasetStore, data: bytes, chunk: int = 100, batch_lines: int = 2000, max_line: int = MAX_LINE,
) -> tuple[dict, list]:
    """Process `data` as an upload; the finished upload row and the entries it created, in order."""
    d = store.datasets.create("p1", "up")
    up = store.uploads.create("p1", d.id, "data.jsonl")
    store.uploads.set(up["id"], status="PROCESSING", bytes_total=len(data))
    UploadProcessor(store, _Objects(data, chunk), batch_lines=batch_lines,  # type: ignore[arg-type]
                    max_line_bytes=max_line)._process(up["id"])
    rows, _ = store.entries.page("p1", d.id, limit=1000)
    return store.uploads.get("p1", d.id, up["id"]), rows


def _contents(rows: list[dict[str, Any]]) -> list[str]:
    return [r["messages"][0]["content"] for r in rows]


# ------------------------------------------------------------------------------------------ split_lines


def _split(data: bytes, chunk: int, max_bytes: int = 10, offset: int = 0) -> list[Line]:
    return list(split_lines((data[i:i + chunk] for i in range(0, len(data), chunk)), offset, max_bytes))


@pytest.mark.parametrize("chunk", [1, 3, 7, 100])
def test_lines_and_their_ends_whatever_the_chunking(chunk: int) -> None:
    data = b"ab\n\n0123456789\n01234567890\nlast"
    assert _split(data, chunk) == [
        Line(3, b"ab", 2), Line(4, b"", 0), Line(15, b"0123456789", 10), Line(27, None, 11), Line(31, b"last", 4),
    ]


@pytest.mark.parametrize("chunk", [1, 4, 64])
def test_a_line_with_no_newline_is_counted_not_kept(chunk: int) -> None:
    data = b"ok\n" + b"x" * 1000
    assert _split(data, chunk) == [Line(3, b"ok", 2), Line(1003, None, 1000)]


def test_ends_count_from_the_offset_a_resumed_read_starts_at() -> None:
    assert _split(b"ab\ncd\n", 2, offset=500) == [Line(503, b"ab", 2), Line(506, b"cd", 2)]


# ------------------------------------------------------------------------------------------- processing


def test_a_line_deeper_than_the_store_writes_fails_alone(store: DatasetStore) -> None:
    deep_ok = _deep(MAX_LINE_DEPTH)
    parsed = orjson.loads(deep_ok)
    assert nests_deeper_than(parsed, MAX_LINE_DEPTH - 1, deep_ok)
    assert not nests_deeper_than(parsed, MAX_LINE_DEPTH, deep_ok)
    # 2000 levels is past what orjson reads at all; that line fails with the same words.
    data = b"\n".join([_good(0), _deep(255), _good(1), _deep(2000), _good(2), deep_ok, _good(3)]) + b"\n"
    up, rows = _upload(store, data, max_line=1024 * 1024)
    assert up["status"] == "DONE" and up["lines_processed"] == 7 and up["entries_created"] == 5
    assert _contents(rows) == ["q0", "q1", "q2", "deep", "q3"]
    too_deep = (f"line nests objects and arrays more than {MAX_LINE_DEPTH} levels deep; "
                f"an entry may nest at most {MAX_LINE_DEPTH}")
    assert up["errors"] == [{"line": 2, "message": too_deep}, {"line": 4, "message": too_deep}]
    # The entry at the limit also travelled in its event.
    with store.engine.connect() as conn:
        events = eventstore.load(conn, up["dataset_id"])
    carried = [x["messages"][0]["content"] for e in events if e.type == ENTRIES_ADDED for x in e.data["entries"]]
    assert carried == ["q0", "q1", "q2", "deep", "q3"]


def test_an_over_long_line_is_reported_by_number_and_the_rest_read(store: DatasetStore) -> None:
    long_line = b'{"messages":"' + b"x" * 5000 + b'"}'
    data = b"\n".join([_good(0), long_line, _good(1), b"not json", _good(2)]) + b"\n"
    up, rows = _upload(store, data, chunk=64)
    assert up["status"] == "DONE" and up["lines_processed"] == 5
    assert _contents(rows) == ["q0", "q1", "q2"]
    assert up["errors"][0] == {"line": 2, "message": too_long(len(long_line), MAX_LINE)}
    assert too_long(len(long_line), MAX_LINE) == (f"line is {len(long_line)} bytes, longer than the {MAX_LINE} bytes "
                                                  "a line may hold; it was skipped and the rest of the file read")
    assert up["errors"][1]["line"] == 4 and up["errors"][1]["message"].startswith("invalid JSON")
    assert up["error_count"] == 2 and up["bytes_processed"] == len(data)


def test_a_file_that_ends_in_an_endless_line_keeps_what_came_before(store: DatasetStore) -> None:
    data = _good(0) + b"\n" + _good(1) + b"\n" + b"{" * 50_000
    up, rows = _upload(store, data, chunk=4096)
    assert up["status"] == "DONE" and _contents(rows) == ["q0", "q1"]
    assert up["errors"] == [{"line": 3, "message": f"line is 50000 bytes, longer than the {MAX_LINE} bytes a line "
                                                   "may hold; it was skipped and the rest of the file read"}]


def test_a_line_exactly_at_the_limit_is_kept_and_one_byte_more_is_not(store: DatasetStore) -> None:
    def sized(n: int, tag: str) -> bytes:
        head = b'{"messages":[{"role":"user","content":"' + tag.encode() + b'"},{"role":"assistant","content":"'
        tail = b'"}]}'
        return head + b"y" * (n - len(head) - len(tail)) + tail

    at, over = sized(MAX_LINE, "at"), sized(MAX_LINE + 1, "over")
    assert (len(at), len(over)) == (MAX_LINE, MAX_LINE + 1)
    for chunk in (1000, MAX_LINE, 4096):  # lines split across chunks, ending at one, inside one
        up, rows = _upload(store, b"\n".join([_good(0), at, over, _good(1), at]), chunk=chunk)
        assert _contents(rows) == ["q0", "at", "q1", "at"]
        assert [e["line"] for e in up["errors"]] == [3]


def test_bad_lines_across_batches_keep_their_numbers(store: DatasetStore) -> None:
    lines = [_good(i) if i % 3 else b"[" * 300 + b"]" * 300 for i in range(10)]
    up, rows = _upload(store, b"\n".join(lines) + b"\n", batch_lines=2)
    assert up["status"] == "DONE" and up["lines_processed"] == 10
    assert _contents(rows) == [f"q{i}" for i in range(10) if i % 3]
    assert [e["line"] for e in up["errors"]] == [1, 4, 7, 10]
