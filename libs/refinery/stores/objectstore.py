"""The object store: uploads, dataset snapshots and adapters, through the `minio` client.

Production points it at MinIO (or any S3); the embedded stack at SeaweedFS. Objects are
written and read as streams, so a 500 MB upload never sits in memory.
"""

from __future__ import annotations

import functools
import io
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from minio import Minio
from minio.error import S3Error

PART_SIZE = 16 * 1024 * 1024


class ObjectNotFound(KeyError):
    """No object under that key."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str


class _ChunkReader(io.RawIOBase):
    """A file-like view of byte chunks (what `put_object` reads from), fed by any iterable."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buf = bytearray()
        self._done = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while not self._done and (size < 0 or len(self._buf) < size):
            try:
                self._buf += next(self._chunks)
            except StopIteration:
                self._done = True
        if size < 0:
            size = len(self._buf)
        out = bytes(self._buf[:size])
        del self._buf[:size]
        return out


class ChunkPipe:
    """Hands chunks from an asyncio task to a thread running `put_stream` (bounded, so the
    writer waits for S3 instead of buffering the whole upload)."""

    _END = object()

    def __init__(self, max_chunks: int = 8) -> None:
        self._q: queue.Queue = queue.Queue(maxsize=max_chunks)
        self.aborted = threading.Event()

    def put(self, chunk: bytes) -> None:
        self._q.put(chunk)

    def close(self) -> None:
        self._q.put(self._END)

    def abort(self) -> None:
        self.aborted.set()
        self._q.put(self._END)

    def __iter__(self) -> Iterator[bytes]:
        while True:
            item = self._q.get()
            if item is self._END:
                if self.aborted.is_set():
                    raise RuntimeError("upload aborted by the sender")
                return
            yield item


class ObjectStore:
    def __init__(
        self, endpoint: str, access_key: str, secret_key: str, bucket: str, *,
        secure: bool = False, region: str = "us-east-1",
    ) -> None:
        self.bucket = bucket
        self._client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure, region=region)

    def ensure_bucket(self) -> None:
        if not self._client.bucket_exists(self.bucket):
            try:
                self._client.make_bucket(self.bucket)
            except S3Error as exc:
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> ObjectInfo:
        result = self._client.put_object(self.bucket, key, io.BytesIO(data), len(data), content_type=content_type)
        return ObjectInfo(key, len(data), result.etag or "")

    def put_stream(
        self, key: str, chunks: Iterable[bytes], content_type: str = "application/octet-stream"
    ) -> ObjectInfo:
        """Multipart upload of a stream of unknown length; memory stays near one part."""
        counter = _Counting(chunks)
        result = self._client.put_object(
            self.bucket, key, _ChunkReader(counter), -1,  # type: ignore[arg-type]  # read() is all minio uses
            part_size=PART_SIZE, content_type=content_type,
        )
        return ObjectInfo(key, counter.total, result.etag or "")

    def get_bytes(self, key: str) -> bytes:
        resp = self._get(key)
        try:
            return resp.read()
        finally:
            resp.close()
            resp.release_conn()

    def iter_chunks(self, key: str, chunk_size: int = 1024 * 1024, offset: int = 0) -> Iterator[bytes]:
        resp = self._get(key, offset)
        try:
            yield from resp.stream(chunk_size)
        finally:
            resp.close()
            resp.release_conn()

    def iter_lines(self, key: str, offset: int = 0) -> Iterator[tuple[int, bytes]]:
        """(byte offset just past the line, line without its newline), streamed."""
        pos = offset
        rest = b""
        for chunk in self.iter_chunks(key, offset=offset):
            data = rest + chunk
            start = 0
            while (nl := data.find(b"\n", start)) >= 0:
                line = data[start:nl]
                pos += nl - start + 1
                yield pos, line
                start = nl + 1
            rest = data[start:]
        if rest:
            pos += len(rest)
            yield pos, rest

    def stat(self, key: str) -> ObjectInfo:
        try:
            st = self._client.stat_object(self.bucket, key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                raise ObjectNotFound(key) from exc
            raise
        return ObjectInfo(key, int(st.size or 0), st.etag or "")

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        self._client.remove_object(self.bucket, key)

    def list(self, prefix: str = "") -> list[str]:
        return [o.object_name for o in self._client.list_objects(self.bucket, prefix=prefix, recursive=True)]

    def put_dir(self, local: Path, prefix: str) -> str:
        """Every file under `local` to `prefix/<relative path>` (adapters, checkpoints)."""
        for path in sorted(local.rglob("*")):
            if path.is_file():
                with path.open("rb") as fh:
                    self.put_stream(f"{prefix}/{path.relative_to(local).as_posix()}",
                                    iter(functools.partial(fh.read, 1024 * 1024), b""))
        return prefix

    def get_dir(self, prefix: str, local: Path) -> Path:
        keys = self.list(prefix + "/")
        if not keys:
            raise ObjectNotFound(prefix)
        local.mkdir(parents=True, exist_ok=True)
        for key in keys:
            target = local / key[len(prefix) + 1:]
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as fh:
                for chunk in self.iter_chunks(key):
                    fh.write(chunk)
        return local

    def _get(self, key: str, offset: int = 0):
        try:
            return self._client.get_object(self.bucket, key, offset=offset)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                raise ObjectNotFound(key) from exc
            raise


class _Counting:
    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self.total = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self.total += len(chunk)
            yield chunk
