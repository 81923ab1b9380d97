"""A `baseModel` that is a path is a question about the server's disks: only directories under the
configured roots (by default the model cache) may be named; anything else, however odd, is a 400
naming the field, never a 5xx, and the registry goes on answering."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from tests.e2e.conftest import sft


def _create(api: httpx.Client, base: str) -> httpx.Response:
    config = {**sft(1), "baseModel": base}
    return api.post("/models", json={"datasetId": "11779bf9-580f-4bf3-914f-152aabf427db",
                                     "slug": f"path-{uuid.uuid4().hex[:6]}", "trainingConfig": config})


def test_base_model_paths_outside_the_roots_are_400_naming_the_field(api: httpx.Client, tmp_path: Path) -> None:
    outside = tmp_path / "not-a-root" / "my-model"
    outside.mkdir(parents=True)
    (outside / "config.json").write_text("{}")  # a model directory, but not where base models may live
    for base in ("/" + "x" * 5000,  # longer than any file system allows
                 "/" + "/".join(["y" * 255] * 20),
                 "relative/models/base", "../models/base",
                 str(outside), "/etc", "/proc/self/root/etc"):
        resp = _create(api, base)
        assert resp.status_code == 400, (base[:80], resp.status_code, resp.text)
        assert "trainingConfig.baseModel" in resp.json()["message"], resp.json()
    assert api.get("/models").status_code == 200
