"""An uploaded file's lines, each judged on its own: a bad line is reported by number, never the end
of the file.

Two kinds of line would otherwise stop the whole upload: one longer than any entry should be (with
no newline in sight, reading it would hold the rest of the file in memory), and one nested deeper
than the store can write back (orjson reads 1,024 levels but writes 254, and the entry travels in
an event a few levels down). Both are refused here, with a message naming the limit, and the
lines after them are read as usual.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import orjson
from refinery.wire.entries import Entry, EntryError, parse_entry
from refinery.wire.json_depth import nests_deeper_than

# orjson writes at most 254 levels; an uploaded entry is written inside an event's envelope, its
# `data` and the `entries` list, so it keeps a few levels in hand.
MAX_LINE_DEPTH = 250
TOO_DEEP = (f"line nests objects and arrays more than {MAX_LINE_DEPTH} levels deep; "
            f"an entry may nest at most {MAX_LINE_DEPTH}")


@dataclass(frozen=True, slots=True)
class Line:
    """One line of the file: where it ends, and its bytes, or None when it was too long to keep."""

    end: int  # byte offset just past the line and its newline: where processing resumes
    data: bytes | None
    length: int  # the line's bytes, without its newline


def split_lines(chunks: Iterable[bytes], offset: int, max_bytes: int) -> Iterator[Line]:
    """The lines of a stream of chunks that starts at `offset` of the file.

    A line longer than `max_bytes` is counted, not kept: its bytes are dropped as they arrive, so
    memory stays within one chunk plus one line of at most `max_bytes`.
    """
    pos = offset
    buf = bytearray()
    skipped = 0  # bytes of an over-long line read so far (0 while the line is being kept)
    for chunk in chunks:
        start = 0
        while (nl := chunk.find(b"\n", start)) >= 0:
            size = nl - start
            if skipped:
                length, data = skipped + size, None
            elif len(buf) + size > max_bytes:
                length, data = len(buf) + size, None
            elif buf:
                buf += chunk[start:nl]
                length, data = len(buf), bytes(buf)
            else:
                length, data = size, chunk[start:nl]
            buf.clear()
            skipped = 0
            pos += length + 1
            yield Line(pos, data, length)
            start = nl + 1
        size = len(chunk) - start
        if skipped:
            skipped += size
        elif len(buf) + size > max_bytes:
            skipped = len(buf) + size
            buf = bytearray()  # release what the line had taken
        else:
            buf += chunk[start:]
    if skipped or buf:
        length = skipped or len(buf)
        pos += length
        yield Line(pos, None if skipped else bytes(buf), length)


def too_long(length: int, max_bytes: int) -> str:
    return (f"line is {length} bytes, longer than the {max_bytes} bytes a line may hold; "
            "it was skipped and the rest of the file read")




def parse_line(line: bytes) -> Entry | None:
    """One JSONL line as an entry (None for a blank line); EntryError says what is wrong with it."""
    line = line.strip()
    if not line:
        return None
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith("depth limit"):  # orjson's own limit, far past ours
            raise EntryError(TOO_DEEP) from None
        raise EntryError(f"invalid JSON: {str(exc)[:200]}") from None
    if nests_deeper_than(obj, MAX_LINE_DEPTH, line):
        raise EntryError(TOO_DEEP)
    return parse_entry(obj, coerce_metadata=True)
