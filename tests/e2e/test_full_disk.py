"""A full disk never turns into an acknowledged loss.

While the bus is down the gateway keeps reports in its spool (fsynced before the 200). Here the
spool lives on a small tmpfs: once it is full, `/report` answers 507 naming the full spool and
acknowledges nothing it could not keep; when space returns it acknowledges again; and once the bus
is back every acknowledged report is stored exactly once, and none of the refused ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
from refinery.stack.platform import Stack

KEY = "opk-full-disk-test-0001"
SMALL = "384k"
PADDING = "x" * 16_000  # each report's event is ~16 KB, so the small spool holds about 20


def _mount_tmpfs(path: Path, size: str) -> str | None:
    """Mounts a tmpfs of `size` on `path`; the reason it could not, or None."""
    if os.geteuid() != 0:
        return "mounting a small tmpfs needs root"
    try:
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"mount failed: {exc}"
    return None if proc.returncode == 0 else f"mount failed: {proc.stderr.strip()}"


@pytest.fixture(scope="module")
def full_disk_stack(tmp_path_factory: pytest.TempPathFactory):
    data_dir: Path = tmp_path_factory.mktemp("refinery-full-disk")
    spool = data_dir / "gateway" / "spool"
    spool.mkdir(parents=True)
    if (reason := _mount_tmpfs(spool, SMALL)) is not None:
        pytest.skip(f"cannot give the gateway a small spool disk: {reason}")
    stack = Stack(data_dir, env={"REFINERY_INIT_API_KEY": KEY}, ml=False)  # it only logs
    try:
        stack.start()
        yield stack, spool
    finally:
        stack.stop()
        subprocess.run(["umount", "-l", str(spool)], capture_output=True, timeout=30)


def _report(client: httpx.Client, batch: str, seq: int) -> httpx.Response:
    return client.post("/report", json={
        "requestedAt": 1, "receivedAt": 2, "statusCode": 200,
        "reqPayload": {"model": "gpt-4o", "messages": [{"role": "user", "content": PADDING}],
                       "metadata": {"batch": batch, "seq": str(seq)}},
        "respPayload": {"id": f"c{seq}", "choices": []},
    })


def _stored(client: httpx.Client, batch: str) -> Counter:
    resp = client.post("/logs/export", json={"filters": [{"field": "metadata.batch", "equals": batch}]})
    assert resp.status_code == 200, resp.text
    return Counter(int(json.loads(line)["tags"]["seq"]) for line in resp.text.splitlines() if line)


def test_a_full_spool_refuses_with_507_and_recovers(full_disk_stack: tuple[Stack, Path]):
    stack, spool = full_disk_stack
    batch = uuid.uuid4().hex
    acked: set[int] = set()
    refused: set[int] = set()
    with httpx.Client(base_url=stack.api_base, headers={"authorization": f"Bearer {KEY}"}, timeout=60) as client:
        assert _report(client, batch, 0).status_code == 200  # the bus is up: straight onto it
        acked.add(0)
        assert stack.tansu is not None
        stack.tansu.stop()
        seq = 1
        first_refusal: httpx.Response | None = None
        while seq < 200 and len(refused) < 3:
            resp = _report(client, batch, seq)
            if resp.status_code == 200:
                assert not refused, "a report was acknowledged between refusals while the disk stayed full"
                acked.add(seq)
            else:
                assert resp.status_code == 507, resp.text
                first_refusal = first_refusal or resp
                refused.add(seq)
            seq += 1
        assert first_refusal is not None, f"{len(acked)} reports acknowledged and no refusal: the spool never filled"
        body = first_refusal.json()
        assert body["code"] == "INSUFFICIENT_STORAGE" and "no space left" in body["message"], body
        assert len(acked) > 5, f"only {len(acked)} reports fit before the refusal"

        # Space returns: the same gateway acknowledges again, without a restart.
        grown = subprocess.run(["mount", "-o", "remount,size=8m", str(spool)], capture_output=True, text=True)
        assert grown.returncode == 0, grown.stderr
        for _ in range(5):
            resp = _report(client, batch, seq)
            assert resp.status_code == 200, resp.text
            acked.add(seq)
            seq += 1

        # The bus returns: the spool replays; every acknowledged report is stored once, no refused one.
        stack.tansu.start()
        stack.wait_healthy(60)
        deadline = time.monotonic() + 90
        while True:
            stored = _stored(client, batch)
            if acked <= set(stored) or time.monotonic() > deadline:
                break
            time.sleep(1)
    missing = acked - set(stored)
    assert not missing, f"{len(missing)} acknowledged reports lost: {sorted(missing)[:10]}"
    assert not (refused & set(stored)), f"refused reports were stored: {sorted(refused & set(stored))}"
    assert all(n == 1 for n in stored.values()), f"stored more than once: {stored.most_common(3)}"
    print(f"\n{len(acked)} acknowledged ({len(refused)} refused while the spool was full), all stored once")
