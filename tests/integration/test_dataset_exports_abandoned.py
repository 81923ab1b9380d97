"""The dataset service's export over real gRPC on SQLite: clients that hang up after the first
chunk give the export thread back, so the next export is served to its end."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import orjson
import pytest
from dataset.servicer import DatasetsServicer, Limits
from dataset.store import DatasetStore, NewEntry
from refinery.grpc_server import client_channel, start_grpc
from refinery.rpc import datasets_pb2, datasets_pb2_grpc
from refinery.wire.entries import parse_entry

ENTRIES = 3_000  # ~3 MB of JSONL: more than the hand-off buffer and the stream's window hold


@pytest.fixture(scope="module")
async def datasets(tmp_path_factory) -> AsyncIterator[tuple[datasets_pb2_grpc.DatasetsStub, str]]:
    store = DatasetStore(f"sqlite:///{tmp_path_factory.mktemp('ds') / 'dataset.db'}")
    dataset = store.datasets.create("p1", "big").id
    store.entries.add("p1", dataset, [NewEntry(parse_entry({"messages": [
        {"role": "user", "content": f"q{i} " + "z" * 1000}, {"role": "assistant", "content": f"a{i}"}]}))
        for i in range(ENTRIES)], "api")
    # Exports are the only calls made: the collaborators they do not use are left out.
    servicer = DatasetsServicer(store, None, None, None, None, None,  # type: ignore[arg-type]
                                Limits(store_workers=1, snapshot_workers=1, stream_workers=1))
    service = await start_grpc("127.0.0.1", 0, [lambda s: datasets_pb2_grpc.add_DatasetsServicer_to_server(servicer,
                                                                                                          s)])
    channel = client_channel(f"127.0.0.1:{service.port}")
    try:
        yield datasets_pb2_grpc.DatasetsStub(channel), dataset
    finally:
        await channel.close()
        await service.stop(0)
        store.engine.dispose()


async def test_exports_abandoned_after_the_first_chunk_free_the_only_export_thread(datasets) -> None:
    stub, dataset = datasets
    request = datasets_pb2.ExportEntriesRequest(project_id="p1", dataset_id=dataset)
    for _ in range(4):
        call = stub.ExportEntries(request, timeout=120)
        first = await call.read()
        assert first is not grpc.aio.EOF and first.jsonl
        call.cancel()
    body = b"".join([c.jsonl async for c in stub.ExportEntries(request, timeout=120)])
    lines = [orjson.loads(line) for line in body.splitlines()]
    assert len(lines) == ENTRIES and lines[-1]["messages"][-1]["content"] == f"a{ENTRIES - 1}"
