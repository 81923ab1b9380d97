"""The web console in a real headless Chromium, against the whole stack: each test does what a user
does with the mouse and keyboard and asserts what the page shows.

The file runs late in the session on purpose (after the SDK suite has trained its models), so its
fine-tune starts on an idle trainer.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from refinery.stack.platform import Stack

from tests.e2e.browser import chromium, screenshot, sign_in
from tests.e2e.conftest import BASE

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(20_000)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert not errors, f"the page raised: {errors}"


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def _chat(stack: Stack, key: str, text: str, model: str = "gpt-4o") -> dict:
    resp = httpx.post(f"{stack.api_base}/chat/completions", headers={"authorization": f"Bearer {key}"},
                      json={"model": model, "messages": [{"role": "user", "content": text}],
                            "metadata": {"console": "yes"}}, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _issue(api: httpx.Client, name: str, read_only: bool = False) -> dict:
    resp = api.post("/keys", json={"name": name, "readOnly": read_only})
    assert resp.status_code == 201, resp.text
    return resp.json()


def _add_filter(page: Page, field: str, op: str, value: str) -> None:
    page.click("#add-filter")
    row = page.locator(".filter-row").last
    row.locator(".filter-field").select_option(field)
    row = page.locator(".filter-row").last
    row.locator(".filter-op").select_option(op)
    row.locator(".filter-value").fill(value)


def test_sign_in_refuses_a_wrong_key_and_keeps_the_key_out_of_the_url(page: Page, stack: Stack, api_key: str,
                                                                       shots: Path):
    page.goto(f"{stack.url}/")
    expect(page.locator("h1")).to_have_text("Refinery")
    screenshot(page, "sign-in", shots)
    page.fill("#api-key", "opk-not-a-key")
    page.click("button[type=submit]")
    expect(page.locator("#signin-error")).to_have_text("That API key is not valid.")
    page.fill("#api-key", api_key)
    page.click("button[type=submit]")
    expect(page.locator("#top")).to_be_visible()
    expect(page.locator("#who .project")).to_have_text("default")
    assert api_key not in page.url
    assert page.evaluate("sessionStorage.getItem('refinery.apiKey')") == api_key


def test_a_proxied_call_appears_in_the_logs_and_filters_narrow_it(page: Page, stack: Stack, api_key: str,
                                                                  shots: Path):
    tag = uuid.uuid4().hex[:10]
    _chat(stack, api_key, f"console question {tag}")
    _chat(stack, api_key, f"another question {tag}", model="gpt-4o-mini")
    sign_in(page, stack.url, api_key)
    expect(page.locator("tr.log-row").first).to_contain_text(f"another question {tag}")
    _add_filter(page, "request", "contains", tag)
    page.click("#apply-filters")
    expect(page.locator("tr.log-row")).to_have_count(2)
    screenshot(page, "request-logs", shots)
    _add_filter(page, "model", "equals", "gpt-4o")
    page.click("#apply-filters")
    expect(page.locator("tr.log-row")).to_have_count(1)
    row = page.locator("tr.log-row").first
    expect(row).to_contain_text(f"console question {tag}")
    expect(row).to_contain_text(f"Echo: console question {tag}")
    row.click()
    expect(page.locator("#detail-request")).to_contain_text(f'"content": "console question {tag}"')
    expect(page.locator("#detail-response")).to_contain_text(f"Echo: console question {tag}")
    # Does not contain: the first request is left out, the second stays.
    page.locator(".filter-row").last.locator("button").click()
    _add_filter(page, "request", "notContains", "console question")
    page.click("#apply-filters")
    expect(page.locator("tr.log-row")).to_have_count(1)
    expect(page.locator("tr.log-row").first).to_contain_text(f"another question {tag}")


def test_a_hostile_log_is_shown_as_text_and_never_runs(page: Page, stack: Stack, api_key: str):
    tag = uuid.uuid4().hex[:10]
    hostile = f'<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script> {tag}'
    _chat(stack, api_key, hostile)
    sign_in(page, stack.url, api_key)
    _add_filter(page, "request", "contains", tag)
    page.click("#apply-filters")
    row = page.locator("tr.log-row").first
    expect(row).to_contain_text('<img src=x onerror="window.__pwned=1">')
    row.click()
    expect(page.locator("#detail-request")).to_contain_text("<script>window.__pwned=2</script>")
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#log-table img, #log-detail img, #view script").count() == 0


def test_selected_logs_are_imported_into_a_new_dataset(page: Page, stack: Stack, api_key: str, api: httpx.Client):
    tag = uuid.uuid4().hex[:10]
    for i in range(3):
        _chat(stack, api_key, f"import me {i} {tag}")
    sign_in(page, stack.url, api_key)
    _add_filter(page, "request", "contains", tag)
    page.click("#apply-filters")
    expect(page.locator("tr.log-row")).to_have_count(3)
    page.locator("tr.log-row input.pick").nth(0).check()
    page.locator("tr.log-row input.pick").nth(2).check()
    expect(page.locator("#selection")).to_have_text("2 selected")
    page.select_option("#import-dataset", "")
    page.fill("#import-name", f"from-console-{tag}")
    page.click("#import-go")
    expect(page.locator("#banner")).to_contain_text("Imported 2 logs")
    datasets = api.get("/datasets").json()["data"]
    ds = next(d for d in datasets if d["name"] == f"from-console-{tag}")
    page.goto(f"{stack.url}/#/dataset/{ds['id']}")
    expect(page.locator("tr.entry-row")).to_have_count(2)
    expect(page.locator("#entries")).to_contain_text(f"import me 2 {tag}")
    expect(page.locator("#entries")).not_to_contain_text(f"import me 1 {tag}")
    # All matching, as a standing rule: the third log now, and later ones as they arrive.
    page.goto(f"{stack.url}/#/logs")
    page.locator("#select-all").check()
    expect(page.locator("#selection")).to_contain_text("All 3 matching logs selected")
    page.select_option("#import-dataset", ds["id"])
    page.check("#import-standing")
    page.click("#import-go")
    expect(page.locator("#banner")).to_contain_text("Imported 1 logs")
    expect(page.locator("#banner")).to_contain_text("future matching logs will be imported too")


def test_an_upload_with_a_bad_line_reports_that_line_and_keeps_the_rest(page: Page, stack: Stack, api_key: str,
                                                                        api: httpx.Client, tmp_path: Path,
                                                                        shots: Path):
    ds = api.post("/datasets", json={"name": f"upload-{uuid.uuid4().hex[:6]}"}).json()["id"]
    good = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join([json.dumps(good), '{"messages": "not a list"}', json.dumps(good), "{not json"]) + "\n")
    sign_in(page, stack.url, api_key)
    page.goto(f"{stack.url}/#/dataset/{ds}")
    page.click("button[data-tab=Upload]")
    page.set_input_files("#upload-file", str(path))
    page.click("#upload-go")
    expect(page.locator("#upload-status")).to_contain_text("DONE", timeout=60_000)
    expect(page.locator("#upload-status")).to_contain_text("2 entries created, 2 errors")
    errors = page.locator("tr.upload-error")
    expect(errors).to_have_count(2)
    expect(errors.nth(0).locator("td").first).to_have_text("2")
    expect(errors.nth(1).locator("td").first).to_have_text("4")
    assert page.locator("#upload-progress").evaluate("p => p.value") == 1
    screenshot(page, "dataset-upload", shots)
    page.click("button[data-tab=Entries]")
    expect(page.locator("tr.entry-row")).to_have_count(2)


def test_editing_an_output_keeps_the_old_one_as_rejected(page: Page, stack: Stack, api_key: str, api: httpx.Client):
    ds = api.post("/datasets", json={"name": f"edit-{uuid.uuid4().hex[:6]}"}).json()["id"]
    api.post(f"/datasets/{ds}/entries", json={"entries": [
        {"messages": [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Lyon"}]},
    ]}).raise_for_status()
    sign_in(page, stack.url, api_key)
    page.goto(f"{stack.url}/#/dataset/{ds}")
    page.locator("tr.entry-row").first.click()
    expect(page.locator("#edit-output")).to_have_value("Lyon")
    page.fill("#edit-output", "Paris")
    page.check("#keep-rejected")
    page.click("#save-output")
    expect(page.locator("#banner")).to_contain_text("Output saved.")
    expect(page.locator("tr.entry-row").first).to_contain_text("Paris")
    entry = api.get(f"/datasets/{ds}/entries").json()["data"][0]
    assert entry["messages"][-1]["content"] == "Paris"
    assert entry["rejected_message"]["content"] == "Lyon"


def test_relabelling_a_dataset_shows_progress_and_keeps_the_old_outputs(page: Page, stack: Stack, api_key: str,
                                                                         api: httpx.Client):
    ds = api.post("/datasets", json={"name": f"relabel-{uuid.uuid4().hex[:6]}"}).json()["id"]
    questions = ["Capital of France?", "Capital of Italy?", "Capital of Spain?"]
    api.post(f"/datasets/{ds}/entries", json={"entries": [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "no idea"}],
         "split": "TEST" if i == 0 else "TRAIN"} for i, q in enumerate(questions)]}).raise_for_status()
    sign_in(page, stack.url, api_key)
    page.goto(f"{stack.url}/#/dataset/{ds}")
    page.click("button[data-tab=Relabel]")
    page.fill("#relabel-model", "gpt-4o")
    page.select_option("#relabel-split", "TRAIN")
    page.check("#relabel-keep")
    page.click("#relabel-go")
    # The stack's fake upstream answers `Echo: <question>`; only the TRAIN split is relabelled.
    expect(page.locator("#relabel-status")).to_have_text("DONE: 2 of 2 relabelled", timeout=60_000)
    assert page.locator("#relabel-progress").evaluate("p => p.value") == 1
    entries = {e["messages"][0]["content"]: e for e in api.get(f"/datasets/{ds}/entries").json()["data"]}
    assert entries[questions[0]]["messages"][-1]["content"] == "no idea"
    for q in questions[1:]:
        assert entries[q]["messages"][-1]["content"] == f"Echo: {q}"
        assert entries[q]["rejected_message"]["content"] == "no idea"
    page.click("button[data-tab=Entries]")
    expect(page.locator("tr.entry-row").filter(has_text="Echo: Capital of Italy?")).to_have_count(1)


def test_labelling_an_alignment_set_by_keyboard_changes_the_stats(page: Page, stack: Stack, api_key: str,
                                                                  api: httpx.Client, shots: Path):
    name = f"no-bad-{uuid.uuid4().hex[:6]}"
    created = api.post("/criteria", json={"name": name, "prompt": 'The answer fails if the output contains "bad".',
                                          "judgeModel": "gpt-4o"})
    assert created.status_code == 201, created.text
    rows = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": out}]}
            for i, out in enumerate(["a good answer", "a bad answer", "another good one"])]
    added = api.post(f"/criteria/{name}/alignment-set", content="\n".join(json.dumps(r) for r in rows),
                     headers={"content-type": "application/x-ndjson"})
    assert added.json()["added"] == 3, added.text

    def judged() -> bool:
        data = api.get(f"/criteria/{name}/alignment-set").json()["data"]
        return all(r["judge"] is not None for r in data)

    deadline = time.monotonic() + 60
    while not judged():
        assert time.monotonic() < deadline, "the judge did not judge the rows"
        time.sleep(0.5)
    sign_in(page, stack.url, api_key)
    page.goto(f"{stack.url}/#/criterion/{name}")
    expect(page.locator("#row-position")).to_have_text("Row 1 of 3")
    expect(page.locator(".stats-row .labeled")).to_have_text("0")
    expect(page.locator(".stats-row .f1")).to_have_text("—")
    # Keyboard only: the judge's verdict is shown, and each key labels the row and moves on.
    expect(page.locator("#row-output")).to_contain_text("a good answer")
    expect(page.locator("#judge-verdict")).to_contain_text("PASS")
    page.keyboard.press("p")
    expect(page.locator("#row-position")).to_have_text("Row 2 of 3")
    expect(page.locator("#judge-verdict")).to_contain_text("FAIL")
    expect(page.locator("#judge-explanation")).to_have_text('The output contains "bad".')
    page.keyboard.press("f")
    expect(page.locator("#row-position")).to_have_text("Row 3 of 3")
    page.keyboard.press("f")  # the human disagrees with the judge here
    expect(page.locator(".stats-row .labeled")).to_have_text("3")
    # FAIL is positive: TP 1 (row 2), FN 1 (row 3), TN 1 → precision 100 %, recall 50 %, F1 66.7 %.
    expect(page.locator(".stats-row .precision")).to_have_text("100.0%")
    expect(page.locator(".stats-row .recall")).to_have_text("50.0%")
    expect(page.locator(".stats-row .f1")).to_have_text("66.7%")
    page.keyboard.press("k")
    expect(page.locator("#row-position")).to_have_text("Row 2 of 3")
    expect(page.locator("#human-label")).to_have_text("FAIL")
    screenshot(page, "criterion-alignment", shots)


def test_an_eval_shows_its_results_and_head_to_head_matrix(page: Page, stack: Stack, api_key: str,
                                                           api: httpx.Client, shots: Path):
    ds = api.post("/datasets", json={"name": f"eval-{uuid.uuid4().hex[:6]}"}).json()["id"]
    entries = [{"messages": [{"role": "user", "content": f"Say {w}"}, {"role": "assistant", "content": w}],
                "split": "TEST"} for w in ("one", "two", "three")]
    api.post(f"/datasets/{ds}/entries", json={"entries": entries}).raise_for_status()
    created = api.post("/evals", json={
        "name": "echo vs dataset", "datasetId": ds, "type": "head_to_head", "models": ["dataset", "gpt-4o"],
        "judgeModel": "gpt-4o", "instructions": 'prefer the output that contains "Echo"'})
    assert created.status_code == 201, created.text
    sign_in(page, stack.url, api_key)
    page.goto(f"{stack.url}/#/eval/{created.json()['id']}")
    expect(page.locator(".page-head .status")).to_contain_text("COMPLETED", timeout=90_000)
    expect(page.locator("tr.result-row[data-model=gpt-4o] .score")).to_have_text("100.0%")
    expect(page.locator("tr.result-row[data-model=dataset] .score")).to_have_text("0.0%")
    expect(page.locator('#matrix-table td[data-a="gpt-4o"][data-b="dataset"]')).to_have_text("100.0%")
    expect(page.locator('#matrix-table td[data-a="dataset"][data-b="gpt-4o"]')).to_have_text("0.0%")
    first = page.locator("details.eval-row-detail").first
    first.locator("summary").click()
    expect(first.locator(".judgement").first).to_contain_text("gpt-4o wins")
    expect(first.locator(".reasoning").first).to_contain_text('contains "Echo"')
    screenshot(page, "eval-matrix", shots)


def test_usage_shows_calls_per_model_from_the_logs(page: Page, stack: Stack, api_key: str, api: httpx.Client):
    before = api.get("/usage").json()["totals"]["calls"]
    _chat(stack, api_key, f"usage {uuid.uuid4().hex}")
    sign_in(page, stack.url, api_key)
    page.goto(f"{stack.url}/#/usage")
    total = int(page.locator("#total-calls").inner_text().replace(",", ""))
    assert total >= before + 1
    expect(page.locator("#usage-models")).to_contain_text("gpt-4o")
    assert int(page.locator("#chart-calls").get_attribute("data-points") or 0) >= 28  # a bar per day, 30 days


def test_a_read_only_key_browses_every_page_and_is_refused_writes(page: Page, stack: Stack, api: httpx.Client):
    key = _issue(api, "viewer", read_only=True)["key"]
    sign_in(page, stack.url, key)
    expect(page.locator("#who .pill")).to_have_text("read-only")
    for tab in ("logs", "datasets", "models", "criteria", "evals", "usage", "settings"):
        page.goto(f"{stack.url}/#/{tab}")
        expect(page.locator(".page-head h1")).to_be_visible()
        assert not page.locator("#banner.error").is_visible(), f"{tab}: {page.locator('#banner').inner_text()}"
    ds = api.post("/datasets", json={"name": f"viewable-{uuid.uuid4().hex[:6]}"}).json()["id"]
    page.goto(f"{stack.url}/#/dataset/{ds}")
    for tab in ("Entries", "Upload", "Pruning rules", "Relabel", "Import rules", "Snapshots"):
        page.click(f"button[data-tab='{tab}']")
        expect(page.locator(f"button[data-tab='{tab}'].active")).to_be_visible()
        assert not page.locator("#banner.error").is_visible(), f"{tab}: {page.locator('#banner').inner_text()}"
    page.click("button[data-tab='Snapshots']")
    page.click("#take-snapshot")
    expect(page.locator("#banner.error")).to_contain_text(f"can read but not POST /api/v1/datasets/{ds}/snapshots")
    page.goto(f"{stack.url}/#/datasets")
    page.fill("#new-dataset-name", "not allowed")
    page.click("#create-dataset")
    expect(page.locator("#banner.error")).to_contain_text(
        "This API key is read-only: it can read but not POST /api/v1/datasets")
    assert not any(d["name"] == "not allowed" for d in api.get("/datasets").json()["data"])
    page.goto(f"{stack.url}/#/settings")
    page.fill("#key-name", "escalation")
    page.click("#issue-key")
    expect(page.locator("#banner.error")).to_contain_text("read-only")


def test_revoking_the_signed_in_key_signs_out(page: Page, stack: Stack, api: httpx.Client, shots: Path):
    issued = _issue(api, f"temp-{uuid.uuid4().hex[:6]}")
    sign_in(page, stack.url, issued["key"])
    page.goto(f"{stack.url}/#/settings")
    row = page.locator(f"tr.key-row[data-id='{issued['id']}']")
    expect(row).to_contain_text("active")
    screenshot(page, "settings", shots)
    page.once("dialog", lambda d: d.accept())
    row.locator("button.revoke").click()
    # The page's next call (reloading the key list) is refused: back to the sign-in page, saying why.
    expect(page.locator("#signin-message")).to_contain_text("no longer valid")
    expect(page.locator("#top")).to_be_hidden()
    page.goto(f"{stack.url}/#/logs")
    expect(page.locator("#api-key")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('refinery.apiKey')") is None
    gone = httpx.get(f"{stack.api_base}/project", headers={"authorization": f"Bearer {issued['key']}"})
    assert gone.status_code == 401


def test_a_fine_tune_started_in_the_console_draws_its_loss_chart(page: Page, stack: Stack, api_key: str,
                                                                 api: httpx.Client, shots: Path):
    if not stack.with_ml:
        pytest.skip("the ML extra is not installed (make install-ml)")
    tag = uuid.uuid4().hex[:6]
    ds = api.post("/datasets", json={"name": f"tune-{tag}"}).json()["id"]
    entries = [{"messages": [{"role": "user", "content": f"Color {i}?"}, {"role": "assistant", "content": "BLUE"}],
                "split": "TEST" if i < 2 else "TRAIN"} for i in range(16)]
    api.post(f"/datasets/{ds}/entries", json={"entries": entries}).raise_for_status()
    sign_in(page, stack.url, api_key)
    page.goto(f"{stack.url}/#/models")
    page.fill("#model-slug", f"console-{tag}")
    page.select_option("#model-dataset", ds)
    expect(page.locator("#model-base")).to_have_value(BASE)
    page.fill("#model-epochs", "2")
    page.fill("#model-batch", "2")
    page.click("#create-model")
    expect(page).to_have_url(re.compile(f"#/model/console-{tag}$"))
    chart = page.locator("#loss-chart")
    expect(chart).to_have_attribute("data-points", re.compile(r"^[1-9]\d*$"), timeout=480_000)
    first = int(chart.get_attribute("data-points") or 0)
    expect(page.locator(".page-head .status")).to_have_text("DEPLOYED", timeout=480_000)
    assert int(chart.get_attribute("data-points") or 0) > first or first >= 2
    expect(page.locator("#checkpoints tr")).not_to_have_count(0)
    expect(chart.locator("canvas")).to_have_count(1)
    screenshot(page, "fine-tune", shots)
    page.fill("#play-prompt", "Color 7?")
    page.click("#play-send")
    expect(page.locator("#play-answer")).to_contain_text("ms,", timeout=60_000)
    # A new eval compares the newest fine-tune with the rows' outputs and the model it started from.
    page.goto(f"{stack.url}/#/evals")
    expect(page.locator("#eval-models")).to_have_value(f"dataset, openpipe:console-{tag}, openpipe:{BASE}")


def test_training_cancelled_in_the_console_ends_with_its_reason(page: Page, stack: Stack, api_key: str,
                                                                 api: httpx.Client):
    tag = uuid.uuid4().hex[:6]
    ds = api.post("/datasets", json={"name": f"cancel-{tag}"}).json()["id"]
    entries = [{"messages": [{"role": "user", "content": f"Shape {i}?"}, {"role": "assistant", "content": "ROUND"}]}
               for i in range(16)]
    api.post(f"/datasets/{ds}/entries", json={"entries": entries}).raise_for_status()
    slug = f"cancel-{tag}"
    created = api.post("/models", json={"datasetId": ds, "slug": slug, "trainingConfig": {
        "provider": "openpipe", "baseModel": BASE, "sft_hyperparameters": {"num_epochs": 5}}})
    assert created.status_code == 200, created.text
    sign_in(page, stack.url, api_key)
    page.goto(f"{stack.url}/#/model/{slug}")
    # Queued behind other jobs or already training: either way it can be cancelled from its page.
    page.click("#cancel-model")
    expect(page.locator("#banner")).to_contain_text("Training cancelled.")
    expect(page.locator(".page-head .status")).to_have_text("ERROR", timeout=120_000)
    expect(page.locator("#model-error")).to_contain_text("cancel")
    expect(page.locator("#cancel-model")).to_have_count(0)
    model = api.get(f"/models/{slug}").json()["openpipe"]
    assert model["status"] == "ERROR" and "cancel" in model["errorMessage"]


def test_settings_save_a_provider_with_model_costs_and_never_show_its_key(page: Page, stack: Stack,
                                                                          admin: httpx.Client):
    project = admin.post("/admin/v1/projects", json={"name": f"console-settings-{uuid.uuid4().hex[:6]}"}).json()
    sign_in(page, stack.url, project["apiKey"])
    page.goto(f"{stack.url}/#/settings")
    page.fill("#provider-name", "acme")
    page.fill("#provider-url", "https://llm.acme.test/v1")
    page.fill("#provider-key", "sk-secret-9876")
    page.fill("#provider-costs", "acme-small 1.5 2\nacme-large oops 3")
    page.click("#save-provider")
    expect(page.locator("#banner.error")).to_contain_text("Model costs, line 2")
    page.fill("#provider-costs", "acme-small 1.5 2")
    page.click("#save-provider")
    expect(page.locator("#banner")).to_contain_text("Provider acme saved.")
    row = page.locator("tr.provider-row")
    expect(row).to_contain_text("acme-small: $1.5 / $2")
    expect(row).to_contain_text("••••9876")
    assert "sk-secret" not in page.content()
    page.reload()
    expect(page.locator("tr.provider-row")).to_contain_text("https://llm.acme.test/v1")
    assert "sk-secret" not in page.content()


def test_an_expired_key_returns_to_the_sign_in_page(page: Page, stack: Stack, api: httpx.Client):
    issued = api.post("/keys", json={"name": "brief", "expiresInDays": 4 / 86_400}).json()  # four seconds
    assert issued["expiresAt"] == pytest.approx(time.time() + 4, abs=3)
    sign_in(page, stack.url, issued["key"])
    expect(page.locator("#top")).to_be_visible()
    time.sleep(max(0.0, issued["expiresAt"] - time.time()) + 0.5)
    page.goto(f"{stack.url}/#/datasets")
    expect(page.locator("#signin-message")).to_contain_text("no longer valid")
    page.fill("#api-key", issued["key"])
    page.click("button[type=submit]")
    expect(page.locator("#signin-error")).to_have_text("That API key is not valid.")
    listed = {k["id"]: k for k in api.get("/keys").json()["data"]}
    assert listed[issued["id"]]["expiresAt"] == issued["expiresAt"]
