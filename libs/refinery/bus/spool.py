"""A local append-only spool for records the bus could not take.

Part of the no-loss contract: when the broker is unreachable a writer appends the record
here and fsyncs before acknowledging its client, then replays the spool in order once the
broker is back. Records are framed as `<u32 len><u32 crc32><key-len u16><key><value>` so a
torn tail from a crash is detected and dropped (it was never acknowledged).
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

_HEADER = struct.Struct("<IIH")


class Spool:
    """One file of pending (key, value) records plus a cursor of how many were replayed."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._path = directory / "spool.bin"
        self._cursor_path = directory / "spool.cursor"
        self._lock = threading.Lock()
        self._file = open(self._path, "ab")

    @property
    def path(self) -> Path:
        return self._path

    def append(self, key: bytes, value: bytes) -> None:
        """Append one record and fsync: only then may the caller acknowledge it."""
        body = key + value
        frame = _HEADER.pack(len(body), zlib.crc32(body), len(key)) + body
        with self._lock:
            self._file.write(frame)
            self._file.flush()
            os.fsync(self._file.fileno())

    def _read_cursor(self) -> int:
        try:
            return int(self._cursor_path.read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def pending(self) -> Iterator[tuple[int, bytes, bytes]]:
        """Yield (end_position, key, value) for each record not yet replayed, in order."""
        start = self._read_cursor()
        with open(self._path, "rb") as f:
            f.seek(start)
            pos = start
            while True:
                head = f.read(_HEADER.size)
                if len(head) < _HEADER.size:
                    return
                length, crc, key_len = _HEADER.unpack(head)
                body = f.read(length)
                if len(body) < length or zlib.crc32(body) != crc:
                    return  # torn tail: never acknowledged
                pos += _HEADER.size + length
                yield pos, body[:key_len], body[key_len:]

    def mark_replayed(self, position: int) -> None:
        """Persist how far the replay got, so a crash mid-replay resends at most one batch."""
        tmp = self._cursor_path.with_suffix(".tmp")
        tmp.write_text(str(position))
        os.replace(tmp, self._cursor_path)

    def is_empty(self) -> bool:
        size = self._path.stat().st_size
        return size == 0 or self._read_cursor() >= size

    def reset_if_drained(self) -> None:
        """Truncate the file once everything in it is on the bus."""
        with self._lock:
            if self.is_empty():
                self._file.truncate(0)
                self._file.seek(0)
                self.mark_replayed(0)

    def close(self) -> None:
        self._file.close()
