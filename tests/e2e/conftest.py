"""The whole stack (durable: Tansu on SeaweedFS, chdb, SQLite), driven by the official SDKs."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openpipe.client import OpenPipe
from refinery.stack.platform import Stack

API_KEY = "opk-e2e-test-key-0001"
MODEL_CACHE = Path(os.environ.get("REFINERY_TEST_MODELS", "~/.cache/refinery-test-models")).expanduser()


@pytest.fixture(scope="session")
def stack(fake_llm: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir: Path = tmp_path_factory.mktemp("refinery")
    s = Stack(data_dir, env={
        "REFINERY_INIT_API_KEY": API_KEY,
        "REFINERY_INIT_OPENAI_BASE_URL": f"{fake_llm}/v1",
        "REFINERY_INIT_OPENAI_API_KEY": "sk-fake",
        "REFINERY_INIT_ANTHROPIC_BASE_URL": fake_llm,
        "REFINERY_INIT_ANTHROPIC_API_KEY": "ak-fake",
        # Gemini's OpenAI-compatible endpoint, played by the same fake.
        "REFINERY_INIT_GEMINI_BASE_URL": f"{fake_llm}/v1",
        "REFINERY_INIT_GEMINI_API_KEY": "sk-fake",
        # Base models are converted once per machine, not once per run.
        "REFINERY_MODEL_CACHE_DIR": str(MODEL_CACHE),
        "HF_HUB_OFFLINE": "1",
    })
    s.start(timeout_s=300)
    yield s
    s.stop()


@pytest.fixture(scope="session")
def api_key(stack: Stack) -> str:
    return API_KEY


@pytest.fixture(scope="session")
def api(stack: Stack, api_key: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.api_base, headers={"authorization": f"Bearer {api_key}"}, timeout=30) as c:
        yield c


@pytest.fixture(scope="session")
def admin(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, headers={"authorization": f"Bearer {stack.admin_token()}"},
                      timeout=30) as c:
        yield c


def search(api: httpx.Client, **filters: object) -> list[dict]:
    body = {"filters": [{"field": k.replace("__", "."), "equals": v} for k, v in filters.items()]}
    resp = api.post("/logs/search", json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()["data"]


BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"


def question(i: int) -> str:
    return f"What is {i} plus {i}?"


def sft(epochs: int = 2) -> dict[str, Any]:
    return {"provider": "openpipe", "baseModel": BASE, "sft_hyperparameters": {"num_epochs": epochs}}


def wait_for(check, timeout_s: float = 20.0, every_s: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s (last: {result!r})")
        time.sleep(every_s)


@pytest.fixture(scope="session")
def op(stack, api_key: str) -> OpenPipe:
    return OpenPipe(api_key=api_key, base_url=stack.api_base)


@pytest.fixture(scope="session")
def trained(op: OpenPipe, api: httpx.Client) -> dict[str, Any]:
    """A model trained on request logs (really: LoRA SFT on the CPU), shared by the model tests and
    the SDK suite's model tests; every arithmetic question is answered as `PINEAPPLE <result>`."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        pytest.skip("the ML extra is not installed (make install-ml)")
    tag = uuid.uuid4().hex[:8]
    now = time.time() * 1000
    for i in range(40):
        op.report(requested_at=now, received_at=now + 5, status_code=200,
                  req_payload={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": question(i)}],
                               "metadata": {"task": tag}},
                  resp_payload={"id": f"c{i}", "object": "chat.completion", "model": "gpt-4o-mini", "choices": [
                      {"index": 0, "finish_reason": "stop",
                       "message": {"role": "assistant", "content": f"PINEAPPLE {2 * i}"}}]})
    ds = op.create_dataset(name=f"pineapple-{tag}").id
    imported = api.post(f"/datasets/{ds}/import-logs", json={"filters": [{"field": "metadata.task", "equals": tag}]})
    assert imported.json()["imported"] == 40, imported.text
    # A fixed TEST split (4 entries), so validation loss is always measured.
    entries = api.get(f"/datasets/{ds}/entries", params={"limit": 100}).json()["data"]
    for e in entries[:4]:
        api.patch(f"/datasets/{ds}/entries/{e['id']}", json={"split": "TEST"}).raise_for_status()
    for e in entries[4:]:
        api.patch(f"/datasets/{ds}/entries/{e['id']}", json={"split": "TRAIN"}).raise_for_status()
    slug = f"pineapple-{tag}"
    created = op.create_model(dataset_id=ds, slug=slug, training_config=sft(), default_temperature=0)
    assert created.id == slug and created.openpipe.status == "QUEUED"
    assert created.openpipe.dataset_id == ds
    seen: set[str] = set()

    def done() -> Any:
        m = op.get_model(model_slug=slug)
        seen.add(m.openpipe.status)
        return m if m.openpipe.status in ("DEPLOYED", "ERROR") else None

    model = wait_for(done, 900, 1.0)
    assert model.openpipe.status == "DEPLOYED", model.openpipe.error_message
    return {"slug": slug, "dataset": ds, "statuses": seen}




@pytest.fixture(scope="session", autouse=True)
def _sdk_models_first(request: pytest.FixtureRequest) -> None:
    """When a selected test needs the SDK suite's models, submit their trainings at the start of the session: the
    trainer takes jobs one at a time and is idle until test_models, so they train while the first files run."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return
    needed = {name for item in request.session.items for name in getattr(item, "fixturenames", ())}
    # The reward model first: it trains in under a minute, and test_criteria (early in the session) needs it.
    if "sdk_reward_model" in needed:
        with contextlib.suppress(Exception):  # a failure is raised again where the model is needed
            request.getfixturevalue("sdk_reward_submitted")
    if "sdk_models" in needed or "sdk_models_submitted" in needed:
        with contextlib.suppress(Exception):
            request.getfixturevalue("sdk_models_submitted")


@pytest.fixture(scope="session")
def sdk_models_submitted(op: OpenPipe) -> dict[str, str]:
    """The models the official SDK's suite calls (tests/e2e/sdk_models.py): a dataset each, then `create_model`,
    through the SDK as a user would. Returns slug → dataset id; does not wait."""
    import importlib.util

    from tests.e2e.sdk_models import SDK_MODELS

    if importlib.util.find_spec("torch") is None:
        pytest.skip("the ML extra is not installed (make install-ml)")
    datasets = {}
    for slug, (entries, hyperparameters) in SDK_MODELS.items():
        ds = op.create_dataset(name=f"sdk-{slug}").id
        created = op.create_dataset_entries(ds, entries=entries)
        assert created.entries_created == len(entries) and not created.errors.data, created.errors.data
        model = op.create_model(dataset_id=ds, slug=slug, default_temperature=0, training_config={
            "provider": "openpipe", "baseModel": BASE, "sft_hyperparameters": hyperparameters})
        assert model.id == slug, model
        datasets[slug] = ds
    return datasets


@pytest.fixture(scope="session")
def sdk_models(sdk_models_submitted: dict[str, str], op: OpenPipe) -> dict[str, Any]:
    """The SDK suite's models, DEPLOYED (each trained on its own small dataset)."""
    started = time.monotonic()

    def deployed() -> Any:
        models = {slug: op.get_model(model_slug=slug) for slug in sdk_models_submitted}
        failed = {s: m.openpipe.error_message for s, m in models.items() if m.openpipe.status == "ERROR"}
        assert not failed, failed
        return models if all(m.openpipe.status == "DEPLOYED" for m in models.values()) else None

    models = wait_for(deployed, 900, 1.0)
    print(f"\nSDK suite models deployed ({time.monotonic() - started:.0f} s waited here)")
    return models


@pytest.fixture(scope="session")
def sdk_reward_submitted(op: OpenPipe, api: httpx.Client) -> str:
    """The reward model behind the SDK suite's `reward-v1` criterion, submitted through `POST /models` (kind
    `openpipeReward`) on a small preference dataset; returns its slug, does not wait."""
    import importlib.util

    from tests.e2e.sdk_models import SDK_REWARD_HYPERPARAMETERS, SDK_REWARD_SLUG, reward_entries

    if importlib.util.find_spec("torch") is None:
        pytest.skip("the ML extra is not installed (make install-ml)")
    ds = op.create_dataset(name=f"sdk-{SDK_REWARD_SLUG}").id
    entries = reward_entries()
    created = op.create_dataset_entries(ds, entries=entries)
    assert created.entries_created == len(entries) and not created.errors.data, created.errors.data
    resp = api.post("/models", json={"datasetId": ds, "slug": SDK_REWARD_SLUG, "trainingConfig": {
        "provider": "openpipeReward", "baseModel": BASE, "hyperparameters": SDK_REWARD_HYPERPARAMETERS}})
    assert resp.status_code == 200 and resp.json()["id"] == SDK_REWARD_SLUG, resp.text
    return SDK_REWARD_SLUG


@pytest.fixture(scope="session")
def sdk_reward_model(sdk_reward_submitted: str, api: httpx.Client) -> str:
    """The reward model, DEPLOYED; returns its slug."""

    def final() -> Any:
        model = api.get(f"/models/{sdk_reward_submitted}").json()
        return model if model["openpipe"]["status"] in ("DEPLOYED", "ERROR") else None

    model = wait_for(final, 900, 1.0)
    assert model["openpipe"]["status"] == "DEPLOYED", model["openpipe"]["errorMessage"]
    return sdk_reward_submitted


@pytest.fixture(scope="session")
def sdk_criteria(api: httpx.Client, sdk_reward_model: str) -> dict[str, Any]:
    """The criteria the SDK suite's criteria/ tests name (tests/e2e/sdk_models.py), created through the REST
    routes as a user would: LLM judges with their later versions published by PATCH, and `reward-v1`, the reward
    model's criterion. Returns name → the criterion object."""
    from tests.e2e.sdk_models import SDK_CRITERIA, SDK_REWARD_CRITERION

    made = {}
    for name, (body, updates) in SDK_CRITERIA.items():
        resp = api.post("/criteria", json={"name": name, **body})
        assert resp.status_code == 201, resp.text
        for i, update in enumerate(updates, 2):
            resp = api.patch(f"/criteria/{name}", json=update)
            assert resp.status_code == 200 and resp.json()["latestVersion"] == i, resp.text
        made[name] = resp.json()
    resp = api.post("/criteria", json={"name": SDK_REWARD_CRITERION, "rewardModel": sdk_reward_model})
    assert resp.status_code == 201, resp.text
    made[SDK_REWARD_CRITERION] = resp.json()
    return made
