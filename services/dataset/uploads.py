"""JSONL uploads: streamed to the object store as they arrive, then validated line by line.

The file is never held in memory: chunks go to a multipart upload while they arrive, and
processing streams the stored object back, a batch of lines per transaction. Each batch
commits its entries together with the upload's progress (bytes and lines processed), so a
restarted service resumes after the last committed line: nothing lost, nothing twice.
A bad line (invalid, too deep, too long) is reported by its number and the rest of the file is
read as usual (`upload_lines`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from refinery.stores.objectstore import ChunkPipe, ObjectStore
from refinery.wire.entries import EntryError

from dataset.executors import UPLOAD_PROCESSING
from dataset.store import DatasetStore, NewEntry
from dataset.upload_lines import parse_line, split_lines, too_long

log = logging.getLogger("refinery.dataset")

BATCH_BYTES = 8 * 1024 * 1024
MAX_LINE_BYTES = 4 * 1024 * 1024


class UploadProcessor:
    def __init__(
        self, store: DatasetStore, objects: ObjectStore, batch_lines: int = 2000,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> None:
        self._store = store
        self._objects = objects
        self._batch_lines = batch_lines
        self._max_line_bytes = max_line_bytes
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._stopping = threading.Event()

    async def start(self) -> None:
        for upload in await asyncio.to_thread(self._store.uploads.in_status, "RECEIVING"):
            # The sender's stream died with the previous process: the client never got an answer.
            await asyncio.to_thread(self._store.uploads.set, upload["id"], status="FAILED",
                                    error_message="the upload was interrupted before it finished; send it again")
        for upload in await asyncio.to_thread(self._store.uploads.in_status, "PROCESSING"):
            log.warning("resuming upload %s at line %s", upload["id"], upload["lines_processed"])
            self._queue.put_nowait(upload["id"])
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    async def receive(self, project_id: str, dataset_id: str, filename: str, chunks) -> dict[str, Any]:
        """Store the stream under a new upload; queue it for processing once complete."""
        upload = await asyncio.to_thread(self._store.uploads.create, project_id, dataset_id, filename)
        pipe = ChunkPipe()
        writer = asyncio.create_task(asyncio.to_thread(self._objects.put_stream, upload["object_key"], pipe))
        try:
            async for data in chunks:
                if data:
                    await asyncio.to_thread(pipe.put, data)
                if writer.done():
                    break
            pipe.close()
            info = await writer
        except BaseException as exc:
            pipe.abort()
            try:
                await writer
            except Exception:
                pass
            await asyncio.to_thread(self._store.uploads.set, upload["id"], status="FAILED",
                                    error_message=f"receiving the file failed: {exc}"[:2000])
            raise
        await asyncio.to_thread(self._store.uploads.set, upload["id"], status="PROCESSING", bytes_total=info.size)
        self._queue.put_nowait(upload["id"])
        return await asyncio.to_thread(self._store.uploads.get, project_id, dataset_id, upload["id"])

    async def _run(self) -> None:
        while True:
            upload_id = await self._queue.get()
            try:
                await UPLOAD_PROCESSING.run(self._process, upload_id)
            except Exception as exc:
                log.exception("upload %s failed", upload_id)
                await asyncio.to_thread(self._store.uploads.set, upload_id, status="FAILED",
                                        error_message=f"processing failed: {exc}"[:2000])

    def _process(self, upload_id: str) -> None:
        up = self._store.uploads.by_id(upload_id)
        project_id, dataset_id = up["project_id"], up["dataset_id"]
        line_no = up["lines_processed"]
        pos = up["bytes_processed"]
        batch: list[NewEntry] = []
        errors: list[dict[str, Any]] = []
        batch_bytes = 0
        lines_in_batch = 0

        def flush() -> None:
            nonlocal batch, errors, batch_bytes, lines_in_batch
            done_pos, done_lines, errs = pos, line_no, errors
            self._store.entries.add(
                project_id, dataset_id, batch, "upload", upload_id=upload_id,
                also=lambda conn: self._store.uploads.progress(
                    conn, upload_id, bytes_processed=done_pos, lines_processed=done_lines,
                    created=len(batch), errors=errs),
            )
            batch, errors, batch_bytes, lines_in_batch = [], [], 0, 0

        chunks = self._objects.iter_chunks(up["object_key"], offset=pos)
        for line in split_lines(chunks, pos, self._max_line_bytes):
            if self._stopping.is_set():
                return  # resumes from the last committed batch at the next start
            line_no += 1
            pos = line.end
            lines_in_batch += 1
            batch_bytes += len(line.data) if line.data is not None else 0
            entry = None
            try:
                if line.data is None:
                    raise EntryError(too_long(line.length, self._max_line_bytes))
                entry = parse_line(line.data)
            except EntryError as exc:
                errors.append({"line": line_no, "message": str(exc)})
            if entry is not None:
                batch.append(NewEntry(entry))
            if lines_in_batch >= self._batch_lines or batch_bytes >= BATCH_BYTES:
                flush()
        if lines_in_batch:
            flush()
        self._store.uploads.finish(upload_id)
        log.info("upload %s done: %s lines", upload_id, line_no)
