"""Streams made on a worker thread: a reader that goes away gives the thread back, errors reach the
reader, and heavy work is admitted a few at a time per project."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

import orjson
import pytest
from refinery.runtime.admission import Admission, Busy
from refinery.runtime.executors import Purpose
from refinery.runtime.streaming import jsonl_chunks, stream_from_thread


def _endless(closed: threading.Event) -> Iterator[int]:
    """Far more items than any buffer holds; records that it was closed."""
    try:
        n = 0
        while True:
            yield n
            n += 1
    finally:
        closed.set()


async def test_an_abandoned_stream_closes_its_source_and_frees_the_only_thread() -> None:
    pool = Purpose("test.streams", workers=1)
    try:
        for _ in range(5):  # more abandoned streams than the pool has threads
            closed = threading.Event()
            stream = stream_from_thread(pool, lambda closed=closed: _endless(closed), buffer=2)
            assert await anext(stream) == 0
            await stream.aclose()
            assert await asyncio.to_thread(closed.wait, 10), "the worker never stopped"
        # The one thread is free: a stream that ends is served to its end.
        assert [x async for x in stream_from_thread(pool, lambda: range(50))] == list(range(50))
    finally:
        pool.shutdown()


async def test_a_cancelled_reader_frees_the_thread() -> None:
    pool = Purpose("test.cancelled", workers=1)
    closed = threading.Event()
    first = asyncio.Event()

    async def read_forever() -> None:
        async with contextlib.aclosing(stream_from_thread(pool, lambda: _endless(closed), buffer=1)) as stream:
            async for _ in stream:
                first.set()
                await asyncio.sleep(3600)  # a client that stopped reading

    try:
        reader = asyncio.create_task(read_forever())
        await first.wait()
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        assert await asyncio.to_thread(closed.wait, 10)
        assert [x async for x in stream_from_thread(pool, lambda: "ab")] == ["a", "b"]
    finally:
        pool.shutdown()


async def test_the_workers_error_is_raised_to_the_reader_after_what_came_before() -> None:
    pool = Purpose("test.errors", workers=1)

    def failing() -> Iterator[str]:
        yield "first"
        raise ValueError("unknown filter field 'bogus'")

    got: list[str] = []
    try:
        with pytest.raises(ValueError, match="bogus"):
            async for item in stream_from_thread(pool, failing):
                got.append(item)
    finally:
        pool.shutdown()
    assert got == ["first"]


def test_jsonl_chunks_are_whole_lines_of_at_least_the_chunk_size() -> None:
    rows = [{"i": i, "text": "x" * 10} for i in range(100)]
    chunks = list(jsonl_chunks(rows, lambda r: r, chunk_bytes=100))
    assert all(c.endswith(b"\n") for c in chunks)
    assert all(len(c) >= 100 for c in chunks[:-1])
    assert [orjson.loads(line) for line in b"".join(chunks).splitlines()] == rows


def test_closing_the_chunks_closes_the_rows() -> None:
    closed = threading.Event()
    chunks = jsonl_chunks(_endless(closed), lambda n: n, chunk_bytes=10)
    next(chunks)
    chunks.close()
    assert closed.is_set()


def test_admission_refuses_beyond_the_limits_and_frees_slots_when_work_ends() -> None:
    heavy = Admission("heavy log queries", per_key=2, total=3)
    with heavy.slot("p1"), heavy.slot("p1"):
        with pytest.raises(Busy, match="at most 2"):
            with heavy.slot("p1"):
                pass
        with heavy.slot("p2"):  # another project still gets in
            with pytest.raises(Busy, match="as many heavy log queries as it can"):
                with heavy.slot("p3"):
                    pass
    assert heavy.running() == 0 and heavy.running("p1") == 0
    with pytest.raises(RuntimeError), heavy.slot("p1"):  # a failure frees its slot too
        raise RuntimeError("query failed")
    assert heavy.running("p1") == 0
