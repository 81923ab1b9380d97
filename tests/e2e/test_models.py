"""Fine-tune, deploy and serve, end to end through the official SDKs: logs → dataset →
create_model → DEPLOYED → `openpipe:<slug>` answers with the behaviour it was trained on.

The behaviour is one the base model cannot have by chance: every arithmetic question answered
as `PINEAPPLE <result>`. Training really runs (LoRA SFT of SmolLM2-135M on the CPU).
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from openai import OpenAI
from openpipe.client import OpenPipe

from tests.e2e.conftest import BASE, wait_for
from tests.e2e.conftest import question as _question
from tests.e2e.conftest import sft as _sft

pytestmark = pytest.mark.skipif(
    not __import__("importlib").util.find_spec("torch"), reason="the ML extra is not installed (make install-ml)")


def _status(op: OpenPipe, slug: str) -> Any:
    return op.get_model(model_slug=slug)


def wait_final(op: OpenPipe, slug: str, timeout_s: float = 600) -> Any:
    return wait_for(lambda: (m := _status(op, slug)).openpipe.status in ("DEPLOYED", "ERROR") and m, timeout_s, 1.0)


def test_trained_model_answers_with_its_training(trained: dict, stack, api_key: str) -> None:
    client = OpenAI(api_key=api_key, base_url=stack.api_base, max_retries=0)
    model = f"openpipe:{trained['slug']}"
    for i in (51, 63, 77):  # never seen in training
        resp = client.chat.completions.create(model=model, messages=[{"role": "user", "content": _question(i)}])
        assert resp.model == model
        assert resp.choices[0].message.content.startswith("PINEAPPLE"), resp.choices[0].message.content
        assert resp.usage.prompt_tokens > 0 and resp.usage.completion_tokens > 0
    assert {"TRAINING"} <= trained["statuses"]

    stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": _question(12)}],
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("PINEAPPLE")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0

    # Prefill: a final assistant message named "prefill" is continued, not answered.
    resp = client.chat.completions.create(model=model, messages=[
        {"role": "user", "content": _question(30)},
        {"role": "assistant", "name": "prefill", "content": "PINEAPPLE 6"}])
    assert resp.choices[0].message.content.startswith("PINEAPPLE 6")

    n2 = client.chat.completions.create(model=model, messages=[{"role": "user", "content": _question(5)}], n=2,
                                        max_tokens=3)
    assert len(n2.choices) == 2 and all(c.finish_reason in ("length", "stop") for c in n2.choices)


def test_training_is_visible(trained: dict, api: httpx.Client, op: OpenPipe) -> None:
    events = api.get(f"/models/{trained['slug']}/events").json()["data"]
    metrics = [e["data"] for e in events if e["type"] == "metrics"]
    steps = [m for m in metrics if m["train_loss"] is not None]
    assert steps and steps[-1]["step"] == steps[-1]["total_steps"]
    assert steps[-1]["train_loss"] < steps[0]["train_loss"]  # it learned
    assert all(s["token_accuracy"] is not None for s in steps)
    evals = [m["valid_loss"] for m in metrics if m["valid_loss"] is not None]
    assert len(evals) == 2  # validation loss on the TEST split after each epoch
    checkpoints = api.get(f"/models/{trained['slug']}/checkpoints").json()["data"]
    assert [c["epoch"] for c in checkpoints] == [1, 2]
    listed = {m.id for m in op.list_models().data}
    assert trained["slug"] in listed
    dataset = {d.id: d for d in op.list_datasets().data}[trained["dataset"]]
    assert dataset.fine_tune_count >= 1
    # The deprecated route finds it too.
    got = api.get("/unstable/finetune/get", params={"slug": trained["slug"]}).json()
    assert got["status"] == "DEPLOYED" and got["slug"] == trained["slug"]


def test_bad_requests_are_400_before_any_lookup(op: OpenPipe, api: httpx.Client) -> None:
    cases = [
        ({"provider": "openpipe", "baseModel": BASE, "preference_hyperparameters": {"num_epochs": 1}},
         "enable_preference_tuning"),
        ({"provider": "openpipe", "baseModel": "llama-3-1-70b-content", "enable_preference_tuning": True},
         "unknown base model"),
        ({"provider": "openai", "baseModel": "gpt-4o-mini-2024-07-18"}, "provider"),
        ({"provider": "openpipe", "baseModel": BASE, "sft_hyperparameters": {"num_epochs": 0}}, "num_epochs"),
    ]
    for config, words in cases:
        resp = api.post("/models", json={"datasetId": "11779bf9-580f-4bf3-914f-152aabf427db",
                                         "slug": "bad-model", "trainingConfig": config})
        assert resp.status_code == 400, (config, resp.text)
        assert words in resp.json()["message"], resp.json()
    resp = api.post("/models", json={"datasetId": "no-such-dataset", "slug": "bad-model", "trainingConfig": _sft()})
    assert resp.status_code == 400 and "not found" in resp.json()["message"]
    resp = api.post("/models", json={"datasetId": "x", "slug": "no spaces!", "trainingConfig": _sft()})
    assert resp.status_code == 400 and "slug" in resp.json()["message"]
    assert api.get("/models/never-trained").status_code == 404
    assert api.delete("/models/never-trained").status_code == 404


def test_unusable_dataset_fails_fast_with_a_message(op: OpenPipe, api: httpx.Client, trained: dict) -> None:
    ds = op.create_dataset(name="too-small").id
    op.create_dataset_entries(ds, entries=[{"messages": [
        {"role": "user", "content": _question(i)}, {"role": "assistant", "content": "x"}]} for i in range(5)])
    slug = f"too-small-{uuid.uuid4().hex[:6]}"
    op.create_model(dataset_id=ds, slug=slug, training_config=_sft())
    model = wait_final(op, slug, 120)
    assert model.openpipe.status == "ERROR"
    assert "at least 10" in model.openpipe.error_message
    # Its slug is taken until deleted; an undeployed model cannot be called.
    dup = api.post("/models", json={"datasetId": ds, "slug": slug, "trainingConfig": _sft()})
    assert dup.status_code == 400 and "already exists" in dup.json()["message"]
    chat = api.post("/chat/completions", json={"model": f"openpipe:{slug}", "messages": [
        {"role": "user", "content": "hi"}]})
    assert chat.status_code == 400 and "not deployed" in chat.json()["message"]
    wait_for(lambda: {d.id: d for d in op.list_datasets().data}[ds].fine_tune_count == 1, 10)
    assert op.delete_model(model_slug=slug).deleted is True
    assert api.get(f"/models/{slug}").status_code == 404
    # The dataset's count follows: it is kept from the registry's events.
    wait_for(lambda: {d.id: d for d in op.list_datasets().data}[ds].fine_tune_count == 0, 10)


def test_trainer_killed_mid_run_is_retried(op: OpenPipe, stack, trained: dict) -> None:
    slug = f"retry-{uuid.uuid4().hex[:6]}"
    op.create_model(dataset_id=trained["dataset"], slug=slug, training_config=_sft(epochs=1))
    wait_for(lambda: _status(op, slug).openpipe.status == "TRAINING", 300, 0.5)
    stack.restart("trainer", kill=True)
    model = wait_final(op, slug, 600)
    assert model.openpipe.status == "DEPLOYED", model.openpipe.error_message


def test_second_model_with_sft_then_dpo_served_beside_the_first(
    op: OpenPipe, api: httpx.Client, stack, api_key: str, trained: dict
) -> None:
    """Two adapters on one base at once, each with its own behaviour; the second trained SFT then DPO
    on preference pairs whose rejected answers are the first model's style."""
    ds = op.create_dataset(name="banana").id
    entries = [{"messages": [{"role": "user", "content": _question(i)},
                             {"role": "assistant", "content": f"BANANA {2 * i}"}],
                "rejected_message": {"role": "assistant", "content": f"PINEAPPLE {2 * i}"},
                "split": "TEST" if i < 3 else "TRAIN"} for i in range(30)]
    assert op.create_dataset_entries(ds, entries=entries).entries_created == 30
    slug = f"banana-{uuid.uuid4().hex[:6]}"
    op.create_model(dataset_id=ds, slug=slug, training_config={
        "provider": "openpipe", "baseModel": BASE, "enable_sft": True, "enable_preference_tuning": True,
        "sft_hyperparameters": {"num_epochs": 2}, "preference_hyperparameters": {"num_epochs": 1}})
    model = wait_final(op, slug, 900)
    assert model.openpipe.status == "DEPLOYED", model.openpipe.error_message
    phases = {e["data"].get("phase") for e in api.get(f"/models/{slug}/events").json()["data"]}
    assert {"sft", "dpo"} <= phases

    client = OpenAI(api_key=api_key, base_url=stack.api_base, max_retries=0)
    for i in (41, 58):  # interleaved: the adapter is chosen per request
        for name, word in ((trained["slug"], "PINEAPPLE"), (slug, "BANANA")):
            resp = client.chat.completions.create(model=f"openpipe:{name}", temperature=0,
                                                  messages=[{"role": "user", "content": _question(i)}])
            assert resp.choices[0].message.content.startswith(word), (name, resp.choices[0].message.content)


def test_cancel_ends_training_in_error(op: OpenPipe, api: httpx.Client, trained: dict) -> None:
    slug = f"cancel-{uuid.uuid4().hex[:6]}"
    op.create_model(dataset_id=trained["dataset"], slug=slug, training_config=_sft(epochs=5))
    wait_for(lambda: _status(op, slug).openpipe.status == "TRAINING", 300, 0.3)
    assert api.post(f"/models/{slug}/cancel").status_code == 200
    model = wait_final(op, slug, 120)
    assert model.openpipe.status == "ERROR" and "cancel" in model.openpipe.error_message


def test_a_trained_model_is_the_base_of_a_new_one(op: OpenPipe, api: httpx.Client, stack, api_key: str,
                                                  trained: dict) -> None:
    """Continuing from the PINEAPPLE adapter with one more short epoch keeps its behaviour."""
    slug = f"child-{uuid.uuid4().hex[:6]}"
    created = op.create_model(dataset_id=trained["dataset"], slug=slug, training_config={
        "provider": "openpipe", "baseModel": trained["slug"], "sft_hyperparameters": {"num_epochs": 1}})
    assert created.openpipe.base_model == BASE  # the parent's base; its adapter seeds the training
    model = wait_final(op, slug, 600)
    assert model.openpipe.status == "DEPLOYED", model.openpipe.error_message
    client = OpenAI(api_key=api_key, base_url=stack.api_base, max_retries=0)
    resp = client.chat.completions.create(model=f"openpipe:{slug}", temperature=0,
                                          messages=[{"role": "user", "content": _question(44)}])
    assert resp.choices[0].message.content.startswith("PINEAPPLE")
