"""`python -m bench.evals`: how fast evaluations run, against the fake upstream (no model delay).

Prints the rows per second of a head-to-head eval (3 models, so 3 comparisons a row, each judged in
both orders) and of a code eval (the docs' Exact Match grader in the Deno sandbox), both end to end on
the durable embedded stack, and the sandbox's own cost per graded row, batched and alone.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from eval.grading import GraderSandbox
from refinery.stack.platform import Stack

from bench.columns import print_columns
from bench.scenarios import progress
from tests.fakes.running import running_fake_llm
from tests.grader_templates import EXACT_MATCH  # the docs' template, verbatim, as the eval tests run it

API_KEY = "opk-bench-evals-0001"


def _dataset(api: httpx.Client, rows: int) -> str:
    ds = api.post("/datasets", json={"name": f"bench-evals-{uuid.uuid4().hex[:8]}"})
    assert ds.status_code == 200, ds.text
    dataset_id = ds.json()["id"]
    entries = [{"messages": [{"role": "user", "content": f"What is {i} plus {i}? {uuid.uuid4().hex}"},
                             {"role": "assistant", "content": f"PINEAPPLE {2 * i}"}], "split": "TEST"}
               for i in range(rows)]
    made = api.post(f"/datasets/{dataset_id}/entries", json={"entries": entries})
    assert made.status_code == 200, made.text
    return dataset_id


def _run_eval(api: httpx.Client, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    made = api.post("/evals", json=body)
    assert made.status_code == 201, made.text
    eval_id = made.json()["id"]
    while True:
        ev = api.get(f"/evals/{eval_id}").json()
        if ev["status"] in ("COMPLETED", "ERROR"):
            break
        time.sleep(0.05)
    assert ev["status"] == "COMPLETED", ev
    return time.perf_counter() - started, ev


def run_stack(stack: Stack, rows: int) -> list[list[str]]:
    out: list[list[str]] = []
    with httpx.Client(base_url=stack.api_base, headers={"authorization": f"Bearer {API_KEY}"}, timeout=120) as api:
        dataset_id = _dataset(api, rows)
        progress(f"head-to-head eval: {rows} rows x 3 models")
        seconds, ev = _run_eval(api, {"name": "bench h2h", "datasetId": dataset_id, "type": "head_to_head",
                                      "models": ["gpt-4o-mini", "gpt-4o", "dataset"], "judgeModel": "gpt-4o",
                                      "instructions": 'prefer the output that contains "PINEAPPLE"'})
        out.append(["head-to-head, 3 models (3 comparisons a row)", str(rows), f"{seconds:.1f}",
                    f"{rows / seconds:.1f}", f"{ev['comparisons'] / seconds:.1f} comparisons/s"])
        progress(f"code eval: {rows} rows x 2 models")
        seconds, ev = _run_eval(api, {"name": "bench code", "datasetId": dataset_id, "type": "code",
                                      "models": ["gpt-4o-mini", "dataset"], "grader": EXACT_MATCH})
        out.append(["code (Exact Match), 2 models", str(rows), f"{seconds:.1f}", f"{rows / seconds:.1f}",
                    f"{2 * rows / seconds:.1f} grades/s"])
    return out


async def run_sandbox(work_dir: Path, rows: int) -> list[list[str]]:
    sandbox = GraderSandbox(work_dir=work_dir)
    args = [{"messages": [], "tools": None, "toolChoice": None,
             "generatedOutput": {"role": "assistant", "content": f"PINEAPPLE {i}"},
             "datasetOutput": {"role": "assistant", "content": f"PINEAPPLE {i}"}} for i in range(rows)]
    await sandbox.grade(EXACT_MATCH, args[0])  # the compile cache, once
    started = time.perf_counter()
    grades = await sandbox.grade_many(EXACT_MATCH, args)
    batched = (time.perf_counter() - started) * 1000 / rows
    assert all(g.score == 1.0 for g in grades), grades[:3]
    alone = []
    for a in args[:10]:
        t0 = time.perf_counter()
        await sandbox.grade(EXACT_MATCH, a)
        alone.append((time.perf_counter() - t0) * 1000)
    alone.sort()
    return [["sandbox, batched", str(rows), f"{batched:.2f} ms a row"],
            ["sandbox, one row a process", "10", f"{alone[len(alone) // 2]:.1f} ms a row (median)"]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=50)
    parser.add_argument("--sandbox-rows", type=int, default=500)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="refinery-bench-evals-"))
    try:
        progress("the code-grader sandbox alone")
        sandbox_rows = asyncio.run(run_sandbox(tmp / "sandbox", args.sandbox_rows))
        with running_fake_llm(tmp / "fake", delay_ms=0) as fake_url:
            stack = Stack(tmp / "stack", env={"REFINERY_INIT_API_KEY": API_KEY,
                                              "REFINERY_INIT_OPENAI_BASE_URL": f"{fake_url}/v1",
                                              "REFINERY_INIT_OPENAI_API_KEY": "sk-fake"})
            try:
                progress(f"starting a durable stack in {tmp}")
                stack.start()
                rows = run_stack(stack, args.rows)
            finally:
                stack.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print_columns("Evaluation throughput (durable embedded stack, fake upstream without delay, 2 cores shared)",
                  ["eval", "rows", "seconds", "rows/s", ""], rows)
    print("\nCode-grader sandbox cost (Deno, no permissions)")
    for r in sandbox_rows:
        print("  " + "  ".join(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
