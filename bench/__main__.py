"""`python -m bench`: Refinery's figures next to its design budgets.

Starts one fake upstream LLM and one durable stack (Tansu on SeaweedFS, chdb) in a temporary
directory, measures proxy overhead, /report latency, ingest throughput and report-to-
queryable latency, prints the tables, and stops everything. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
import traceback
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer
from refinery.config import REQUEST_LOGS_TOPIC
from refinery.grpc_server import client_channel
from refinery.rpc import logs_pb2_grpc
from refinery.stack.platform import Stack
from refinery.stack.process import ManagedProcess, free_port

from bench.cpu import load_average
from bench.load import PhaseResult, pct
from bench.scenarios import (
    Env,
    IngestResult,
    ProxyRate,
    ReportRate,
    Stored,
    VisibleResult,
    bus_ack_latency,
    ingest_throughput,
    partition_of,
    progress,
    proxy_overhead,
    report_latency,
    report_to_queryable,
)

REPO = Path(__file__).resolve().parent.parent
API_KEY = "opk-bench-key-0001"

# Budgets from the design doc.
PROXY_RATE = 500.0
PROXY_P50_MS = 2.0
PROXY_P99_MS = 10.0
REPORT_RATE = 500.0
REPORT_P99_MS = 10.0
INGEST_PER_S = 20_000.0
VISIBLE_P99_MS = 1000.0

SCENARIOS = ("proxy", "report", "ingest", "visible")


def _rates(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--proxy-rates", type=_rates, default=[50.0, 200.0, 500.0], help="req/s, comma-separated")
    p.add_argument("--report-rates", type=_rates, default=[100.0, 500.0], help="req/s, comma-separated")
    p.add_argument("--phase-s", type=float, default=8.0, help="seconds of load per rate and path")
    p.add_argument("--ingest-n", type=int, default=50_000, help="records produced for the ingest test")
    p.add_argument("--visible-n", type=int, default=100, help="reports per report->queryable mode")
    p.add_argument("--upstream-delay-ms", type=float, default=0.0, help="the fake upstream's answer delay")
    p.add_argument("--only", type=lambda t: set(t.split(",")), default=set(SCENARIOS),
                   help=f"comma-separated subset of {','.join(SCENARIOS)}")
    p.add_argument("--keep", action="store_true", help="keep the data dir and service logs")
    args = p.parse_args(argv)
    if not (0 < args.phase_s <= 60 and 0 < args.ingest_n <= 1_000_000 and 0 < args.visible_n <= 10_000):
        p.error("--phase-s must be in (0, 60], --ingest-n in (0, 1e6], --visible-n in (0, 1e4]")
    if not args.only or not args.only <= set(SCENARIOS):
        p.error(f"--only takes a comma-separated subset of {','.join(SCENARIOS)}")
    if any(not 0 < r <= 5000 for r in args.proxy_rates + args.report_rates):
        p.error("rates must be in (0, 5000]")
    return args


# ---- formatting -------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, r in enumerate(cells):
        padded = (c.rjust(w) if n and _numeric(c) else c.ljust(w) for c, w in zip(r, widths, strict=True))
        lines.append(" | ".join(padded))
        if n == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return "\n".join("  " + line.rstrip() for line in lines)


def _numeric(cell: str) -> bool:
    return bool(cell) and (cell[0].isdigit() or cell[0] in "+-") and cell != "-"


def ms(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.2f}"


def top(values: Sequence[float]) -> float:
    return max(values) if values else math.nan


def signed(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:+.2f}"


def rate(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def errs(r: PhaseResult) -> str:
    if not r.errors:
        return "0"
    return f"{r.errors} (" + ", ".join(f"{k}: {v}" for k, v in sorted(r.error_kinds.items())) + ")"


def error_notes(label: str, r: PhaseResult) -> list[str]:
    return [f"  {label}, first {kind} body: {body}" for kind, body in sorted(r.error_samples.items())]


def reached(r: PhaseResult) -> bool:
    return r.done_rate >= 0.95 * r.target_rate and r.sent_rate >= 0.95 * r.target_rate


def verdict(ok: bool, why: str = "") -> str:
    return "PASS" if ok else ("FAIL" + (f" ({why})" if why else ""))


# ---- the run ----------------------------------------------------------------------------


class Results:
    def __init__(self) -> None:
        self.proxy: list[ProxyRate] = []
        self.report: list[ReportRate] = []
        self.bus_ack: list[PhaseResult] = []
        self.ingest: IngestResult | None = None
        self.visible: VisibleResult | None = None
        self.failures: dict[str, str] = {}
        self.load_start = "?"
        self.cpu_idle: dict[str, float] = {}
        self.partition = -1  # the default project's partition of the request-log topic


async def _partitions(bootstrap: str) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        return len(await producer.partitions_for(REQUEST_LOGS_TOPIC))
    finally:
        await producer.stop()


async def run_all(args: argparse.Namespace, stack: Stack, fake_url: str, project_id: str,
                  pids: dict[str, int]) -> Results:
    """Run order: idle, report->queryable and ingest (on a quiet bus), then proxy and /report."""
    out = Results()
    assert stack.tansu is not None
    partitions = await _partitions(stack.tansu.bootstrap)
    out.partition = partition_of(project_id, partitions)
    # Idle connections are dropped before the gateway's (uvicorn's 5 s) keep-alive ends, so a
    # request never lands on a connection the server is closing (a client artefact, not a result).
    connector = aiohttp.TCPConnector(limit=2000, keepalive_timeout=4)
    channel = client_channel(f"127.0.0.1:{stack.ports['log_ingest_grpc']}", token=stack.internal_token)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
            env = Env(stack.api_base, API_KEY, fake_url, project_id, partitions, stack.tansu.bootstrap, session,
                      logs_pb2_grpc.LogStoreStub(channel), pids)

            async def step(name: str, fn: Callable[[], Awaitable[Any]]) -> Any:
                try:
                    return await fn()
                except Exception as exc:
                    out.failures[name] = f"failed: {type(exc).__name__}: {exc}"
                    traceback.print_exc()
                    return None

            progress("measuring the stack's CPU use while idle (3 s)")
            idle = env.cpu()
            idle.start()
            await asyncio.sleep(3)
            out.cpu_idle = idle.stop()
            used_partitions = {out.partition}
            if "visible" in args.only:
                out.visible = await step("visible", lambda: report_to_queryable(env, args.visible_n))
            if "ingest" in args.only:
                out.ingest = await step("ingest", lambda: ingest_throughput(env, args.ingest_n, {out.partition}))
                if out.ingest:
                    used_partitions.add(out.ingest.partition)
            if "proxy" in args.only:
                out.proxy = await step("proxy", lambda: proxy_overhead(env, args.proxy_rates, args.phase_s)) or []
            if "report" in args.only:
                out.report = await step("report", lambda: report_latency(env, args.report_rates, args.phase_s)) or []
                out.bus_ack = await step("bus", lambda: bus_ack_latency(
                    env, args.report_rates, args.phase_s, used_partitions)) or []
    finally:
        await channel.close()
    return out


def render(args: argparse.Namespace, res: Results, wall_s: float) -> str:
    parts: list[str] = []
    add = parts.append
    add(f"Refinery benchmark — {os.cpu_count()} CPU(s), Python {platform.python_version()}, durable stack "
        f"(Tansu on SeaweedFS, chdb), fake upstream delay {args.upstream_delay_ms:g} ms, "
        f"everything incl. this client on one machine; total {wall_s:.0f} s")
    add(f"Load average (1/5/15 min) at start: {res.load_start}; at end: {load_average()}. "
        "Other work on this machine competes for the same cores: see 'other processes' in table 5.")
    add("Run order: idle, 4, 3, 1, 2. 'logs stored' = the phase's acknowledged logs found by an unbound search "
        "afterwards (STALLED = the count stopped moving).")
    summary: list[list[str]] = []
    stalls: list[str] = []

    def stored(s: Stored, what: str) -> str:
        if not s.complete:
            stalls.append(f"{what}: {s.found:,} of {s.expected:,} stored")
        return s.text()

    add("\n1. Proxy overhead: open loop, same body, directly to the fake upstream vs through the gateway "
        f"({args.phase_s:g} s per rate and path; latency counted from each request's due time)")
    if res.proxy:
        rows = []
        for pr in res.proxy:
            for name, r in (("direct", pr.direct), ("gateway", pr.gateway)):
                rows.append([f"{pr.rate:g}", name, f"{r.sent_rate:.0f}", f"{r.done_rate:.0f}", errs(r),
                             ms(pct(r.latencies_ms, 50)), ms(pct(r.latencies_ms, 99)), ms(top(r.latencies_ms)),
                             ms(pct(r.lags_ms, 99))])
        add(table(["target/s", "path", "sent/s", "done/s", "errors", "p50 ms", "p99 ms", "max ms",
                   "client lag p99 ms"], rows))
        rows = []
        for pr in res.proxy:
            d, g = pr.direct, pr.gateway
            d50 = pct(g.latencies_ms, 50) - pct(d.latencies_ms, 50)
            d99 = pct(g.latencies_ms, 99) - pct(d.latencies_ms, 99)
            budget = f"p50 ≤ {PROXY_P50_MS:g}, p99 ≤ {PROXY_P99_MS:g}" if pr.rate == PROXY_RATE else "(info)"
            v = "-"
            if pr.rate == PROXY_RATE:
                why = []
                if not reached(g) or not reached(d):
                    why.append(f"rate not reached: {g.done_rate:.0f}/s")
                if g.errors or d.errors:
                    why.append("errors")
                if not d50 <= PROXY_P50_MS:
                    why.append("p50")
                if not d99 <= PROXY_P99_MS:
                    why.append("p99")
                v = verdict(not why, ", ".join(why))
                summary.append(["proxy overhead p50 @500/s", f"≤ {PROXY_P50_MS:g} ms", f"{signed(d50)} ms", v])
                summary.append(["proxy overhead p99 @500/s", f"≤ {PROXY_P99_MS:g} ms", f"{signed(d99)} ms", v])
            rows.append([f"{pr.rate:g}", signed(d50), signed(d99), ms(pct(g.overheads_ms, 50)),
                         ms(pct(g.overheads_ms, 99)), stored(pr.stored, f"proxied @{pr.rate:g}/s"), budget, v])
        add("")
        add(table(["target/s", "overhead p50 ms (gw-direct)", "overhead p99 ms (gw-direct)",
                   "x-refinery-overhead-ms p50", "header p99", "logs stored", "budget ms", "verdict"], rows))
        for pr in res.proxy:
            parts.extend(error_notes(f"direct @{pr.rate:g}/s", pr.direct))
            parts.extend(error_notes(f"gateway @{pr.rate:g}/s", pr.gateway))
    else:
        add(f"  {res.failures.get('proxy', 'not run')}")

    add(f"\n2. /report latency: open loop ({args.phase_s:g} s per rate; acknowledged = durable on the bus)")
    if res.report:
        rows = []
        for rr in res.report:
            r = rr.result
            v = "-"
            budget = f"p99 ≤ {REPORT_P99_MS:g}" if r.target_rate == REPORT_RATE else "(info)"
            p99 = pct(r.latencies_ms, 99)
            if r.target_rate == REPORT_RATE:
                why = ([f"rate not reached: {r.done_rate:.0f}/s"] if not reached(r) else []) + \
                      (["errors"] if r.errors else []) + (["p99"] if not p99 <= REPORT_P99_MS else [])
                v = verdict(not why, ", ".join(why))
                summary.append(["/report ack p99 @500/s", f"≤ {REPORT_P99_MS:g} ms", f"{ms(p99)} ms", v])
            rows.append([f"{r.target_rate:g}", "gateway /report", f"{r.sent_rate:.0f}", f"{r.done_rate:.0f}",
                         errs(r), ms(pct(r.latencies_ms, 50)), ms(p99), ms(top(r.latencies_ms)),
                         ms(pct(r.lags_ms, 99)), stored(rr.stored, f"/report @{r.target_rate:g}/s"), budget, v])
        for r in res.bus_ack:
            rows.append([f"{r.target_rate:g}", "bus only (aiokafka)", f"{r.sent_rate:.0f}", f"{r.done_rate:.0f}",
                         errs(r), ms(pct(r.latencies_ms, 50)), ms(pct(r.latencies_ms, 99)),
                         ms(top(r.latencies_ms)), ms(pct(r.lags_ms, 99)), "-", "(diagnostic)", "-"])
        add(table(["target/s", "path", "sent/s", "done/s", "errors", "p50 ms", "p99 ms", "max ms",
                   "client lag p99 ms", "logs stored", "budget ms", "verdict"], rows))
        for rr in res.report:
            parts.extend(error_notes(f"/report @{rr.result.target_rate:g}/s", rr.result))
        if res.bus_ack:
            add("  'bus only' produces the same record straight to Tansu with the gateway's producer settings "
                "(acks=all, linger 2 ms): the broker's share of /report's latency.")
    else:
        add(f"  {res.failures.get('report', 'not run')}")

    add("\n3. Ingest throughput: envelopes of a fresh project produced straight to the request-log topic "
        "(one partition that no other measurement writes), until all are searchable")
    ig = res.ingest
    if ig:
        ok = ig.ingest_rate is not None and ig.ingest_rate >= INGEST_PER_S
        why = "" if ig.stored_s is not None else f"only {ig.stored_final:,} of {ig.n:,} stored"
        if ig.stored_s is None:
            stalls.append(f"ingest test: {ig.stored_final:,} of {ig.n:,} stored")
        v = verdict(ok, why)
        add(table(["records", "partition", "produce s", "produce rec/s", "all searchable s",
                   "ingest rec/s (first send → all)", "ingest-only rec/s (after produce)", "budget rec/s", "verdict"],
                  [[f"{ig.n:,}", ig.partition, f"{ig.produce_s:.2f}", rate(ig.produce_rate),
                    "-" if ig.stored_s is None else f"{ig.stored_s:.2f}", rate(ig.ingest_rate), rate(ig.drain_rate),
                    f"≥ {INGEST_PER_S:,.0f}", v]]))
        add(f"  ({ig.stored_at_acked:,} were searchable when the last produce was acknowledged; "
            "searchability polled every 100 ms over log-ingest's unbound gRPC Search)")
        if ig.bus_read_s is not None or ig.bus_read_records:
            secs = "-" if ig.bus_read_s is None else f"{ig.bus_read_s:.2f}"
            per = ig.bus_read_records / ig.bus_read_calls if ig.bus_read_calls else math.nan
            add(f"  Bus alone (diagnostic): a bare consumer with log-ingest's settings read "
                f"{ig.bus_read_records:,} of the {ig.n:,} records back in {secs} s = {rate(ig.bus_read_rate)} rec/s, "
                f"{per:,.0f} records per getmany on average; no decoding or storing.")
        summary.append(["ingest bus → log store", f"≥ {INGEST_PER_S:,.0f}/s", f"{rate(ig.ingest_rate)}/s", v])
    else:
        add(f"  {res.failures.get('ingest', 'not run')}")

    add("\n4. Report → queryable: one report at a time, then read back (run first, on a quiet stack)")
    vis = res.visible
    if vis:
        p99u = pct(vis.unbound_ms, 99)
        ok = p99u <= VISIBLE_P99_MS and not vis.missing_unbound
        v = verdict(ok, "missing" if vis.missing_unbound else "")
        rows = [
            ["/report round trip", len(vis.report_ms), ms(pct(vis.report_ms, 50)), ms(pct(vis.report_ms, 99)),
             ms(top(vis.report_ms)), "-", "(info)", "-"],
            ["ack → bound gateway search returns it", len(vis.bound_ms), ms(pct(vis.bound_ms, 50)),
             ms(pct(vis.bound_ms, 99)), ms(top(vis.bound_ms)), vis.missing_bound, "(info)", "-"],
            ["ack → unbound gRPC search sees it (5 ms polls)", len(vis.unbound_ms), ms(pct(vis.unbound_ms, 50)),
             ms(p99u), ms(top(vis.unbound_ms)), vis.missing_unbound, f"p99 ≤ {VISIBLE_P99_MS:g}", v],
        ]
        add(table(["measure", "n", "p50 ms", "p99 ms", "max ms", "missing", "budget ms", "verdict"], rows))
        if vis.errors or vis.cut_short:
            add(f"  errors: {vis.errors}" + (f"; {vis.cut_short}" if vis.cut_short else ""))
        summary.append(["report visible (unbound) p99", f"≤ {VISIBLE_P99_MS:g} ms", f"{ms(p99u)} ms", v])
    else:
        add(f"  {res.failures.get('visible', 'not run')}")

    windows: list[tuple[str, dict[str, float]]] = [("idle (no load)", res.cpu_idle)] if res.cpu_idle else []
    if ig:
        windows.append(("ingest", ig.cpu))
    if res.proxy:
        windows.append((f"gateway @{res.proxy[-1].rate:g}/s", res.proxy[-1].cpu_gateway))
    if res.report:
        windows.append((f"/report @{res.report[-1].result.target_rate:g}/s", res.report[-1].cpu))
    if windows:
        add(f"\n5. CPU while idle and during the heaviest phases (% of one core; {os.cpu_count()} cores in all)")
        extra = ("other processes", "hypervisor steal")
        names = [n for n in windows[0][1] if n not in extra]
        rows = [[n] + [f"{w.get(n, math.nan):.0f}" for _, w in windows] for n in names]
        rows.append(["= this benchmark"] + [f"{sum(w.get(n, 0.0) for n in names):.0f}" for _, w in windows])
        rows += [[n] + [f"{w.get(n, math.nan):.0f}" for _, w in windows] for n in extra]
        add(table(["process"] + [w for w, _ in windows], rows))

    if stalls:
        summary.append(["every acknowledged log stored", "all", "; ".join(stalls), "FAIL (ingest stalled)"])
    elif res.proxy or res.report:
        summary.append(["every acknowledged log stored", "all", "all", "PASS"])
    add("\nSummary against the design budgets")
    add(table(["figure", "budget", "measured", "verdict"], summary or [["-", "-", "-", "-"]]))
    if stalls:
        add(f"  Ingest stopped storing logs (default project on partition {res.partition}); see "
            "bench/README.md ('logs stored') and log-ingest's log (--keep).")
    return "\n".join(parts)


def _get_json(url: str, token: str) -> Any:
    req = urllib.request.Request(url, headers={"authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return orjson.loads(r.read())


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through `finally`, which stops every process


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    load_start = load_average()
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="refinery-bench-"))
    fake_port = free_port()
    fake_url = f"http://127.0.0.1:{fake_port}"
    fake = ManagedProcess(
        "fake-llm",
        [sys.executable, "-m", "tests.fakes.upstream", "--port", str(fake_port),
         "--delay-ms", f"{args.upstream_delay_ms:g}"],
        tmp / "logs", cwd=REPO,
    )
    stack: Stack | None = None
    try:
        progress(f"starting the fake upstream and a durable stack in {tmp}")
        fake.start()

        def fake_up() -> bool:
            with urllib.request.urlopen(f"{fake_url}/health", timeout=1) as r:
                return r.status == 200

        fake.wait_ready(fake_up, 30)
        stack = Stack(tmp / "stack", env={
            "REFINERY_INIT_API_KEY": API_KEY,
            "REFINERY_INIT_OPENAI_BASE_URL": f"{fake_url}/v1",
            "REFINERY_INIT_OPENAI_API_KEY": "sk-fake",
        })
        stack.start()
        projects = _get_json(f"{stack.url}/admin/v1/projects", stack.admin_token())
        project_id = next(p["id"] for p in projects if p["name"] == "default")
        assert stack.tansu is not None and stack.seaweed is not None and fake.proc is not None
        pids = {"bench client": os.getpid(), "fake upstream": fake.proc.pid}
        pids.update({n: p.proc.pid for n, p in stack.services.items() if p.proc is not None})
        for n, proc in (("tansu", stack.tansu.process.proc), ("seaweedfs", stack.seaweed.process.proc)):
            if proc is not None:
                pids[n] = proc.pid
        progress(f"stack up in {time.perf_counter() - started:.0f}s at {stack.url} (project {project_id})")
        results = _run(run_all(args, stack, fake_url, project_id, pids))
        results.load_start = load_start
        print(render(args, results, time.perf_counter() - started), flush=True)
        return 1 if results.failures else 0
    finally:
        progress("stopping")
        if stack is not None:
            stack.stop()
        fake.stop()
        if args.keep:
            progress(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _run(coro: Awaitable[Results]) -> Results:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    return uvloop.run(coro)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
