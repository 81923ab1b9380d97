"""A local append-only spool for records the bus could not take.

Part of the no-loss contract: when the broker is unreachable a writer appends the record
here and fsyncs before acknowledging its client, then replays the spool in order once the
broker is back. Records are framed as `<u32 len><u32 crc32><key-len u16><key><value>`.

A torn tail (a crash or a full disk mid-write) was never acknowledged, but left in place it
would hide every record appended after it: at open the spool moves any torn bytes after the
last whole frame to `spool.torn-<n>` (kept for inspection) and truncates there, and an append
that fails half-way is cut back before the error reaches the caller. Records the bus refuses
for good (too large) are set aside in `dead-letters.bin`, with the reason, by `DeadLetters`.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
import zlib
from collections import deque
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
        self.quarantined = self._quarantine_torn_tail()
        self._file = open(self._path, "ab")

    @property
    def path(self) -> Path:
        return self._path

    def _frames(self, start: int) -> Iterator[tuple[int, bytes, bytes]]:
        """(end_position, key, value) of each whole, intact frame from `start`, stopping at a torn one."""
        try:
            f = open(self._path, "rb")
        except FileNotFoundError:
            return
        with f:
            f.seek(start)
            pos = start
            while True:
                head = f.read(_HEADER.size)
                if len(head) < _HEADER.size:
                    return
                length, crc, key_len = _HEADER.unpack(head)
                body = f.read(length)
                if len(body) < length or zlib.crc32(body) != crc:
                    return  # torn: never acknowledged
                pos += _HEADER.size + length
                yield pos, body[:key_len], body[key_len:]

    def _whole_frames_end(self) -> int:
        """Where the last whole, intact frame ends (0 for an empty or missing file)."""
        last = deque(self._frames(0), maxlen=1)
        return last[0][0] if last else 0

    def _quarantine_torn_tail(self) -> Path | None:
        end = self._whole_frames_end()
        size = self._path.stat().st_size if self._path.exists() else 0
        if size <= end:
            return None
        n = 1
        while (target := self._path.with_name(f"spool.torn-{n}")).exists():
            n += 1
        with open(self._path, "rb") as f:
            f.seek(end)
            target.write_bytes(f.read())
        os.truncate(self._path, end)
        if self._read_cursor() > end:
            self.mark_replayed(end)
        return target

    def append(self, key: bytes, value: bytes) -> None:
        """Append one record and fsync: only then may the caller acknowledge it. A write that fails
        (a full disk) is cut back to where it started, so no torn frame hides later records."""
        body = key + value
        frame = _HEADER.pack(len(body), zlib.crc32(body), len(key)) + body
        with self._lock:
            start = self._file.tell()
            try:
                self._file.write(frame)
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError:
                with contextlib.suppress(OSError):
                    self._file.truncate(start)
                    self._file.seek(start)
                raise

    def _read_cursor(self) -> int:
        try:
            return int(self._cursor_path.read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def pending(self) -> Iterator[tuple[int, bytes, bytes]]:
        """Yield (end_position, key, value) for each record not yet replayed, in order."""
        return self._frames(self._read_cursor())

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


class DeadLetters:
    """Records a producer could never deliver (the bus refuses them for good), with the reason.

    Appended and fsynced like the spool, framed `<u32 len><u32 crc32><u16 key len><u16 reason
    len><key><reason><value>`; nothing here is retried. `read` lists them for an operator."""

    _HEAD = struct.Struct("<IIHH")

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "dead-letters.bin"
        self._lock = threading.Lock()

    def add(self, key: bytes, value: bytes, reason: str) -> None:
        why = reason.encode()[:65535]
        body = key + why + value
        frame = self._HEAD.pack(len(body), zlib.crc32(body), len(key), len(why)) + body
        with self._lock, open(self.path, "ab") as f:
            f.write(frame)
            f.flush()
            os.fsync(f.fileno())

    def read(self) -> list[tuple[bytes, str, bytes]]:
        """Every (key, reason, value) set aside, oldest first."""
        out: list[tuple[bytes, str, bytes]] = []
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return out
        pos = 0
        while pos + self._HEAD.size <= len(data):
            length, crc, key_len, why_len = self._HEAD.unpack_from(data, pos)
            body = data[pos + self._HEAD.size:pos + self._HEAD.size + length]
            if len(body) < length or zlib.crc32(body) != crc:
                break
            out.append((body[:key_len], body[key_len:key_len + why_len].decode(errors="replace"),
                        body[key_len + why_len:]))
            pos += self._HEAD.size + length
        return out
