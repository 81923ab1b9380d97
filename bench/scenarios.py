"""The measurements, each against a running stack and fake upstream (see __main__)."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import grpc
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from refinery.config import REQUEST_LOGS_TOPIC
from refinery.events.request_logs import RequestLogRecordedV2, Usage, request_log_recorded
from refinery.rpc import logs_pb2, logs_pb2_grpc

from bench.cpu import CpuWindow
from bench.load import PhaseResult, open_loop

CHAT_MODEL = "gpt-4o-mini"
COMPLETION = {
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000, "model": CHAT_MODEL,
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Echo: Say hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 6, "completion_tokens": 3, "total_tokens": 9},
}
STALL_S = 3.0  # a count that does not move for this long is reported as stalled


def progress(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def chat_body(run: str) -> bytes:
    return orjson.dumps({"model": CHAT_MODEL, "messages": [{"role": "user", "content": "Say hi"}],
                         "metadata": {"run": run}})


def report_body(run: str) -> bytes:
    now = time.time() * 1000
    return orjson.dumps({
        "requestedAt": now - 5, "receivedAt": now, "statusCode": 200, "respPayload": COMPLETION,
        "reqPayload": {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "Say hi"}],
                       "metadata": {"run": run}},
    })


def partition_of(project_id: str, partitions: int) -> int:
    """The partition the bus's producers pick for a project's records (key = project id)."""
    all_ = list(range(partitions))
    return DefaultPartitioner()(project_id.encode(), all_, all_)


def project_elsewhere(avoid: set[int], partitions: int) -> str:
    """A fresh project id whose records land on a partition not in `avoid`."""
    for _ in range(1000):
        pid = uuid.uuid4().hex
        if partition_of(pid, partitions) not in avoid:
            return pid
    raise RuntimeError("no project id found for a free partition")


@dataclass
class Stored:
    """How many of a phase's acknowledged logs became searchable, and when that stopped."""

    expected: int
    found: int
    seconds: float  # after the phase ended, until all were found or the count stopped moving

    @property
    def complete(self) -> bool:
        return self.found >= self.expected

    def text(self) -> str:
        if self.complete:
            return f"all {self.expected:,} in {self.seconds:.1f} s"
        return f"{self.found:,} of {self.expected:,}, STALLED"


@dataclass
class Env:
    """What every scenario needs: where things are, one HTTP session, one gRPC stub."""

    api_base: str
    api_key: str
    fake_url: str
    project_id: str
    partitions: int
    bus_bootstrap: str
    session: aiohttp.ClientSession
    logs: logs_pb2_grpc.LogStoreStub
    cpu_pids: dict[str, int]

    @property
    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.api_key}", "content-type": "application/json"}

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, float | None]:
        async with self.session.post(url, data=body, headers=headers) as r:
            payload = await r.read()
            oh = r.headers.get("x-refinery-overhead-ms")
            return r.status, payload, float(oh) if oh is not None else None

    async def search_total(self, run: str, *, bound: bool = True, project_id: str | None = None) -> int:
        """`total` of logs with metadata.run == run: bound through the gateway, or unbound over gRPC."""
        if not bound:
            resp = await self.logs.Search(logs_pb2.SearchRequest(
                project_id=project_id or self.project_id, limit=1,
                filters=[logs_pb2.Filter(field="metadata.run", value=run, value_type="string")],
            ), timeout=10)
            return resp.total
        body = orjson.dumps({"filters": [{"field": "metadata.run", "equals": run}], "limit": 1})
        status, payload, _ = await self.post(f"{self.api_base}/logs/search", body, self.auth)
        if status != 200:
            raise RuntimeError(f"search answered {status}: {payload[:300]!r}")
        return orjson.loads(payload)["total"]

    async def stored(self, run: str, expected: int, limit_s: float = 20.0) -> Stored:
        """Wait (unbound) until `expected` logs tagged `run` are searchable, the count stalls, or limit_s."""
        t0 = last_change = time.perf_counter()
        found = last = -1
        while True:
            try:
                found = await self.search_total(run, bound=False)
            except grpc.aio.AioRpcError as exc:
                progress(f"search failed ({exc.code().name}), retrying")
            now = time.perf_counter()
            if found >= expected:
                return Stored(expected, found, now - t0)
            if found != last:
                last, last_change = found, now
            if now - last_change > STALL_S or now - t0 > limit_s:
                return Stored(expected, max(found, 0), now - t0)
            await asyncio.sleep(0.1)

    def cpu(self) -> CpuWindow:
        return CpuWindow(self.cpu_pids)


async def _warm(fire: Callable, n: int) -> None:
    for _ in range(n):
        try:
            await asyncio.wait_for(fire(), 10)
        except Exception:
            pass


# ---- proxy overhead ---------------------------------------------------------------------


@dataclass
class ProxyRate:
    rate: float
    direct: PhaseResult
    gateway: PhaseResult
    stored: Stored
    cpu_gateway: dict[str, float] = field(default_factory=dict)


async def proxy_overhead(env: Env, rates: list[float], duration_s: float) -> list[ProxyRate]:
    direct_url = f"{env.fake_url}/v1/chat/completions"
    direct_headers = {"authorization": "Bearer sk-fake", "content-type": "application/json"}
    gateway_url = f"{env.api_base}/chat/completions"
    tag = uuid.uuid4().hex[:8]

    def direct(body: bytes) -> Callable:
        async def fire() -> tuple[int, float | None, bytes]:
            status, payload, _ = await env.post(direct_url, body, direct_headers)
            return status, None, payload
        return fire

    def via_gateway(body: bytes) -> Callable:
        async def fire() -> tuple[int, float | None, bytes]:
            status, payload, oh = await env.post(gateway_url, body, env.auth)
            return status, oh, payload
        return fire

    warm = chat_body("bench-warm-up")
    out = []
    for rate in rates:
        run = f"bench-proxy-{rate:g}-{tag}"
        body = chat_body(run)  # the same bytes both ways
        await _warm(direct(warm), 30)
        progress(f"proxy overhead: direct at {rate:.0f} req/s for {duration_s:.0f}s")
        d = await open_loop(direct(body), rate, duration_s)
        await _warm(via_gateway(warm), 30)
        progress(f"proxy overhead: through the gateway at {rate:.0f} req/s for {duration_s:.0f}s")
        cpu = env.cpu()
        cpu.start()
        g = await open_loop(via_gateway(body), rate, duration_s)
        usage = cpu.stop()
        # The proxied calls' logs are ingested before the next phase starts (and counted).
        out.append(ProxyRate(rate, d, g, await env.stored(run, g.ok), usage))
    return out


# ---- /report latency --------------------------------------------------------------------


@dataclass
class ReportRate:
    result: PhaseResult
    stored: Stored
    cpu: dict[str, float]


async def report_latency(env: Env, rates: list[float], duration_s: float) -> list[ReportRate]:
    url = f"{env.api_base}/report"
    tag = uuid.uuid4().hex[:8]

    def fire_with(body: bytes) -> Callable:
        async def fire() -> tuple[int, float | None, bytes]:
            status, payload, _ = await env.post(url, body, env.auth)
            return status, None, payload
        return fire

    out = []
    for rate in rates:
        run = f"bench-report-{rate:g}-{tag}"
        await _warm(fire_with(report_body("bench-warm-up")), 30)
        progress(f"/report at {rate:.0f} req/s for {duration_s:.0f}s")
        cpu = env.cpu()
        cpu.start()
        res = await open_loop(fire_with(report_body(run)), rate, duration_s)
        usage = cpu.stop()
        out.append(ReportRate(res, await env.stored(run, res.ok), usage))
    return out


async def bus_ack_latency(env: Env, rates: list[float], duration_s: float, avoid: set[int]) -> list[PhaseResult]:
    """The same record produced straight to the bus as the gateway's producer does it (acks=all,
    linger 2 ms): the broker's share of /report's latency. Sent as a throwaway project whose
    partition no other measurement uses, and with one log id, so ingest stores it once."""
    project = project_elsewhere(avoid, env.partitions)
    value = _envelopes(project, "bench-bus-ack", 1)[0]
    key = project.encode()
    producer = AIOKafkaProducer(
        bootstrap_servers=env.bus_bootstrap, linger_ms=2, max_batch_size=256 * 1024, acks="all",
        enable_idempotence=False, request_timeout_ms=30000,
    )
    await producer.start()
    out = []
    try:
        async def fire() -> tuple[int, float | None, bytes]:
            await producer.send_and_wait(REQUEST_LOGS_TOPIC, value, key=key)
            return 200, None, b""

        for rate in rates:
            await _warm(fire, 30)
            progress(f"bus acks (aiokafka, no gateway) at {rate:.0f} req/s for {duration_s:.0f}s")
            out.append(await open_loop(fire, rate, duration_s))
    finally:
        await producer.stop()
    return out


# ---- ingest throughput ------------------------------------------------------------------


@dataclass
class IngestResult:
    n: int
    partition: int
    produce_s: float  # first send -> every record acknowledged (acks=all)
    stored_s: float | None  # first send -> all n searchable; None if they never were
    stored_at_acked: int  # how many were searchable when producing finished
    stored_final: int
    cpu: dict[str, float]
    bus_read_s: float | None = None  # a bare consumer reading the same records back, no processing
    bus_read_records: int = 0
    bus_read_calls: int = 0  # getmany calls that returned records

    @property
    def produce_rate(self) -> float:
        return self.n / self.produce_s

    @property
    def ingest_rate(self) -> float | None:
        return self.n / self.stored_s if self.stored_s else None

    @property
    def drain_rate(self) -> float | None:
        """Ingest alone: records stored per second after the producer had finished."""
        if not self.stored_s or self.stored_s <= self.produce_s:
            return None
        return (self.n - self.stored_at_acked) / (self.stored_s - self.produce_s)

    @property
    def bus_read_rate(self) -> float | None:
        return self.bus_read_records / self.bus_read_s if self.bus_read_s else None


def _envelopes(project_id: str, run: str, n: int) -> list[bytes]:
    req = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "Say hi"}], "metadata": {"run": run}}
    now = time.time() * 1000
    usage = Usage(prompt_tokens=6, completion_tokens=3, total_tokens=9)
    return [
        request_log_recorded(project_id, RequestLogRecordedV2(
            source="report", received_at=now, requested_at=now - 5, completed_at=now, model=CHAT_MODEL,
            status_code=200, req_payload=req, resp_payload=COMPLETION, usage=usage,
            completion_id="chatcmpl-bench",
        )).to_bytes()
        for _ in range(n)
    ]


async def ingest_throughput(env: Env, n: int, avoid: set[int], limit_s: float = 90.0,
                            poll_s: float = 0.1) -> IngestResult:
    """N envelopes of a fresh project (on a partition no other measurement writes) straight to
    the bus; log-ingest's unbound search polled until all are searchable."""
    project = project_elsewhere(avoid, env.partitions)
    partition = partition_of(project, env.partitions)
    run = f"bench-ingest-{uuid.uuid4().hex[:8]}"
    values = _envelopes(project, run, n)
    key = project.encode()
    producer = AIOKafkaProducer(
        bootstrap_servers=env.bus_bootstrap, linger_ms=5, max_batch_size=256 * 1024, acks="all",
        enable_idempotence=False, max_request_size=16 * 1024 * 1024, request_timeout_ms=30000,
    )
    await producer.start()
    progress(f"ingest: producing {n} envelopes ({sum(map(len, values)) / n:.0f} B each) to "
             f"{REQUEST_LOGS_TOPIC} partition {partition}")
    stored_s: float | None = None
    stored_total = 0
    acked = asyncio.Event()
    stored_at_acked = -1
    cpu = env.cpu()

    async def poll(t0: float) -> None:
        nonlocal stored_s, stored_total, stored_at_acked
        last, last_change = -1, time.perf_counter()
        while time.perf_counter() < t0 + limit_s:
            try:
                stored_total = await env.search_total(run, bound=False, project_id=project)
            except grpc.aio.AioRpcError as exc:
                progress(f"ingest: search failed ({exc.code().name}), retrying")
            now = time.perf_counter()
            if acked.is_set() and stored_at_acked < 0:
                stored_at_acked = stored_total
            if stored_total >= n:
                stored_s = now - t0
                return
            if stored_total != last:
                last, last_change = stored_total, now
            elif acked.is_set() and now - last_change > 10 * STALL_S:
                progress(f"ingest: stalled at {stored_total} of {n}")
                return
            await asyncio.sleep(poll_s)

    try:
        cpu.start()
        t0 = time.perf_counter()
        poller = asyncio.create_task(poll(t0))
        futures = [await producer.send(REQUEST_LOGS_TOPIC, v, key=key) for v in values]
        metas = await asyncio.wait_for(asyncio.gather(*futures), timeout=limit_s)
        produce_s = time.perf_counter() - t0
        acked.set()
        progress(f"ingest: {n} acknowledged in {produce_s:.2f}s; waiting until all are searchable")
        await poller
        usage = cpu.stop()
    finally:
        await producer.stop()
    res = IngestResult(n, partition, produce_s, stored_s, max(stored_at_acked, 0), stored_total, usage)
    first, last = min(m.offset for m in metas), max(m.offset for m in metas)
    progress(f"ingest: reading offsets {first}..{last} back with a bare consumer (the bus's own read rate)")
    res.bus_read_s, res.bus_read_records, res.bus_read_calls = await _read_back(
        env.bus_bootstrap, metas[0].partition, first, last, limit_s / 2)
    return res


async def _read_back(bootstrap: str, partition: int, first: int, last: int,
                     limit_s: float) -> tuple[float | None, int, int]:
    """Consume [first, last] of one partition with log-ingest's consumer settings, doing nothing else."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
        fetch_max_wait_ms=20, max_partition_fetch_bytes=16 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tp = TopicPartition(REQUEST_LOGS_TOPIC, partition)
        consumer.assign([tp])
        consumer.seek(tp, first)
        count = calls = 0
        t0 = last_change = time.perf_counter()
        while (now := time.perf_counter()) - t0 < limit_s and now - last_change < 10 * STALL_S:
            batches = await consumer.getmany(tp, timeout_ms=200, max_records=20000)
            msgs = batches.get(tp, [])
            if msgs:
                calls += 1
                last_change = time.perf_counter()
                count += sum(1 for m in msgs if first <= m.offset <= last)
                if msgs[-1].offset >= last:
                    return time.perf_counter() - t0, count, calls
        return None, count, calls
    finally:
        await consumer.stop()


# ---- report -> queryable ----------------------------------------------------------------


@dataclass
class VisibleResult:
    bound_ms: list[float] = field(default_factory=list)  # /report ack -> bound search returned it
    unbound_ms: list[float] = field(default_factory=list)  # /report ack -> unbound gRPC search saw it
    report_ms: list[float] = field(default_factory=list)  # /report round trip
    missing_bound: int = 0
    missing_unbound: int = 0
    errors: int = 0
    cut_short: str = ""


async def report_to_queryable(env: Env, n: int, poll_s: float = 0.005, limit_s: float = 5.0,
                              budget_s: float = 40.0) -> VisibleResult:
    """One report at a time. Each mode stops early after `budget_s` or 3 misses in a row."""
    res = VisibleResult()
    url = f"{env.api_base}/report"
    tag = uuid.uuid4().hex[:8]

    async def report(run: str) -> float | None:
        t0 = time.perf_counter()
        status, _, _ = await env.post(url, report_body(run), env.auth)
        t1 = time.perf_counter()
        if status != 200:
            res.errors += 1
            return None
        res.report_ms.append((t1 - t0) * 1000)
        return t1

    progress(f"report->queryable: {n} reports read back bound (gateway search)")
    started, misses = time.perf_counter(), 0
    for i in range(n):
        if time.perf_counter() - started > budget_s or misses >= 3:
            res.cut_short = f"bound mode stopped after {i} reports"
            break
        run = f"bench-vis-b-{tag}-{i}"
        if (t1 := await report(run)) is None:
            continue
        try:
            total = await env.search_total(run)
        except (RuntimeError, aiohttp.ClientError):
            total = 0
        if total >= 1:
            res.bound_ms.append((time.perf_counter() - t1) * 1000)
            misses = 0
        else:
            res.missing_bound += 1
            misses += 1

    progress(f"report->queryable: {n} reports polled unbound (log-ingest gRPC) every {poll_s * 1000:.0f} ms")
    started, misses = time.perf_counter(), 0
    for i in range(n):
        if time.perf_counter() - started > budget_s or misses >= 3:
            res.cut_short += ("; " if res.cut_short else "") + f"unbound mode stopped after {i} reports"
            break
        run = f"bench-vis-u-{tag}-{i}"
        if (t1 := await report(run)) is None:
            continue
        seen = False
        for _ in range(int(limit_s / poll_s)):  # bounded in count; each try takes at least poll_s
            try:
                if await env.search_total(run, bound=False) >= 1:
                    seen = True
                    break
            except grpc.aio.AioRpcError:
                res.errors += 1
            if time.perf_counter() - t1 > limit_s:
                break
            await asyncio.sleep(poll_s)
        if seen:
            res.unbound_ms.append((time.perf_counter() - t1) * 1000)
            misses = 0
        else:
            res.missing_unbound += 1
            misses += 1
    return res
