"""The object-store contract, run against the embedded S3 server (SeaweedFS) and, with
--production-images, MinIO."""

from __future__ import annotations

import hashlib
import os
import threading
import uuid

import pytest
from refinery.stack.infra import SeaweedFS
from refinery.stores.objectstore import ChunkPipe, ObjectNotFound, ObjectStore


@pytest.fixture(scope="module", params=["seaweedfs", "minio-container"])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    if request.param == "seaweedfs":
        c: SeaweedFS = request.getfixturevalue("seaweed")
        endpoint, access, secret = c.credentials.endpoint, c.credentials.access_key, c.credentials.secret_key
    else:
        m = request.getfixturevalue("minio_container")
        endpoint, access, secret = m["endpoint"], m["access_key"], m["secret_key"]
    s = ObjectStore(endpoint, access, secret, "contract-" + uuid.uuid4().hex[:8])
    s.ensure_bucket()
    s.ensure_bucket()  # idempotent
    return s


def test_bytes_round_trip_and_stat(store: ObjectStore) -> None:
    info = store.put_bytes("a/one.txt", b"hello")
    assert info.size == 5
    assert store.get_bytes("a/one.txt") == b"hello"
    assert store.stat("a/one.txt").size == 5
    assert store.exists("a/one.txt")
    assert "a/one.txt" in store.list("a/")


def test_missing_object_is_typed(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound):
        store.get_bytes("nope/" + uuid.uuid4().hex)
    with pytest.raises(ObjectNotFound):
        store.stat("nope/" + uuid.uuid4().hex)
    assert not store.exists("nope/x")


def test_stream_upload_of_several_parts(store: ObjectStore) -> None:
    block = os.urandom(1024 * 1024)
    chunks = [block] * 40  # 40 MiB: three multipart parts
    info = store.put_stream("big/blob", iter(chunks))
    assert info.size == 40 * 1024 * 1024
    digest = hashlib.sha256()
    for chunk in store.iter_chunks("big/blob"):
        digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(block * 40).hexdigest()


def test_lines_are_streamed_with_offsets_and_resume(store: ObjectStore) -> None:
    lines = [f'{{"n": {i}}}'.encode() for i in range(5000)]
    body = b"\n".join(lines) + b"\nlast-without-newline"
    store.put_bytes("lines.jsonl", body)
    got = list(store.iter_lines("lines.jsonl"))
    assert [line for _, line in got] == [*lines, b"last-without-newline"]
    assert got[-1][0] == len(body)
    # Resuming at a line's end offset yields exactly the following lines.
    resume_at = got[2499][0]
    assert next(line for _, line in store.iter_lines("lines.jsonl", offset=resume_at)) == lines[2500]


def test_pipe_from_another_thread(store: ObjectStore) -> None:
    pipe = ChunkPipe()
    result: dict = {}
    t = threading.Thread(target=lambda: result.setdefault("info", store.put_stream("piped", pipe)))
    t.start()
    for i in range(100):
        pipe.put(b"%05d\n" % i)
    pipe.close()
    t.join(30)
    assert result["info"].size == 600
    assert store.get_bytes("piped").splitlines()[-1] == b"00099"


def test_aborted_pipe_stores_nothing(store: ObjectStore) -> None:
    pipe = ChunkPipe()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            store.put_stream("aborted", pipe)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    pipe.put(b"partial")
    pipe.abort()
    t.join(30)
    assert errors and "aborted" in str(errors[0])
    assert not store.exists("aborted")
