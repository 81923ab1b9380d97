"""More deployed adapters than inference holds in memory: every deployed model still answers, its
adapter loaded again on demand when it was evicted (from its local copy, or from the object store
when that is gone); a model that was unloaded on purpose answers 404 and is not loaded again."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from inference.engine import Engine
from inference.serving import InferenceServer
from trainer.training import SftParams, train_sft

from tests.unit.dir_objects import DirObjects
from tests.unit.test_ml_training_tiny import BASE_ID, ROWS, _tiny_base


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = _tiny_base(tmp_path_factory.mktemp("tiny-base"))
    out = tmp_path_factory.mktemp("sft")
    train_sft(base, BASE_ID, ROWS, [], out, SftParams(epochs=1))
    return base, out / "adapter"


@pytest.fixture
async def served(trained: tuple[Path, Path], tmp_path: Path) -> AsyncIterator[tuple[InferenceServer, TestClient]]:
    base, adapter = trained
    objects = DirObjects(tmp_path / "bucket")
    for name in ("m1", "m2", "m3"):
        objects.put_dir(adapter, f"adapters/{name}")
    engine = Engine(base, BASE_ID, max_adapters=2)
    server = InferenceServer(engine, objects, tmp_path / "adapters", BASE_ID)  # type: ignore[arg-type]
    for name in ("m1", "m2", "m3"):  # three deployments, room for two
        server.load(name, f"adapters/{name}", [])
    app = web.Application()
    app.router.add_post("/v1/chat/completions", server.chat)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield server, client
    finally:
        await client.close()
        engine.close()


def _chat(model_id: str, stream: bool = False) -> dict:
    return {"json": {"model": f"openpipe:{model_id}", "max_tokens": 3, "temperature": 0, "stream": stream,
                     "messages": [{"role": "user", "content": "What is 2 plus 1?"}]},
            "headers": {"x-refinery-adapter": model_id}}


async def test_an_evicted_adapter_answers_again_loaded_on_demand(served) -> None:
    server, client = served
    assert server.engine.adapters() == ["m2", "m3"]  # m1 was evicted to make room for m3
    resp = await client.post("/v1/chat/completions", **_chat("m1"))
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["model"] == "openpipe:m1" and body["usage"]["completion_tokens"] > 0
    assert "m1" in server.engine.adapters() and len(server.engine.adapters()) == 2

    # m2 was evicted by m1's return; with its local copy gone it comes back from the object store.
    assert "m2" not in server.engine.adapters()
    shutil.rmtree(server._dir / "m2")
    resp = await client.post("/v1/chat/completions", **_chat("m2", stream=True))
    assert resp.status == 200, await resp.text()
    text = await resp.text()
    assert text.rstrip().endswith("data: [DONE]") and '"finish_reason"' in text
    assert "m2" in server.engine.adapters()


async def test_a_model_unloaded_on_purpose_or_never_deployed_is_not_found(served) -> None:
    server, client = served
    server.forget("m3")
    server.forget("m1")  # evicted already: forgetting it is still fine
    for name in ("m3", "m1", "never-deployed"):
        resp = await client.post("/v1/chat/completions", **_chat(name))
        assert resp.status == 404, name
        assert (await resp.json())["code"] == "model_not_found"
    assert server.engine.adapters() == ["m2"]


async def test_a_deployment_remembered_at_restart_loads_on_its_first_request(served) -> None:
    """What a restart does with more deployments than fit: the rest are remembered, not loaded."""
    server, client = served
    server._objects.put_dir(server._dir / "m3", "adapters/m4")
    server.remember("m4", "adapters/m4", [])
    assert "m4" not in server.engine.adapters()
    resp = await client.post("/v1/chat/completions", **_chat("m4"))
    assert resp.status == 200, await resp.text()
    assert "m4" in server.engine.adapters()
