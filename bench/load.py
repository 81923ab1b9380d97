"""Open-loop load: requests are started on a fixed schedule, whatever the answers do.

A closed loop (send, wait, send) slows down with the server and so hides its queueing
("coordinated omission"). Here request i is due at t0 + i/rate; its latency is counted from
that due time, so time a request spent waiting for a busy client or server is included.
`lag` (start minus due time) shows how far the client itself fell behind its schedule.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

# One request: returns (HTTP status, value of x-refinery-overhead-ms or None, response body).
Fire = Callable[[], Awaitable[tuple[int, float | None, bytes]]]


def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class PhaseResult:
    target_rate: float
    duration_s: float
    sent: int = 0
    ok: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    error_samples: dict[str, str] = field(default_factory=dict)  # first response body of each HTTP error
    latencies_ms: list[float] = field(default_factory=list)  # due time -> answer read, successes only
    lags_ms: list[float] = field(default_factory=list)  # due time -> actually started
    overheads_ms: list[float] = field(default_factory=list)  # x-refinery-overhead-ms headers
    sent_rate: float = 0.0  # requests started per second
    done_rate: float = 0.0  # successful answers per second, over the time from t0 to the last answer

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


async def open_loop(
    fire: Fire, rate: float, duration_s: float, *, timeout_s: float = 10.0, drain_s: float = 20.0
) -> PhaseResult:
    res = PhaseResult(rate, duration_s)
    n = max(1, int(rate * duration_s))
    interval = 1.0 / rate
    tasks: list[asyncio.Task[None]] = []
    last_done = 0.0
    first_start = last_start = 0.0

    async def one(due: float) -> None:
        nonlocal last_done
        started = time.perf_counter()
        res.lags_ms.append((started - due) * 1000)
        try:
            status, overhead, body = await asyncio.wait_for(fire(), timeout_s)
        except TimeoutError:
            res.error("timeout")
            return
        except Exception as exc:
            res.error(type(exc).__name__)
            return
        done = time.perf_counter()
        if status != 200:
            res.error(f"http {status}")
            res.error_samples.setdefault(f"http {status}", body[:200].decode(errors="replace"))
            return
        res.ok += 1
        res.latencies_ms.append((done - due) * 1000)
        if overhead is not None:
            res.overheads_ms.append(overhead)
        last_done = max(last_done, done)

    t0 = time.perf_counter() + 0.05
    i = 0
    while i < n:  # bounded: n requests, each due at a fixed time
        now = time.perf_counter()
        while i < n and t0 + i * interval <= now:
            tasks.append(asyncio.create_task(one(t0 + i * interval)))
            if i == 0:
                first_start = now
            last_start = now
            i += 1
        if i < n:
            await asyncio.sleep(max(0.0, t0 + i * interval - time.perf_counter()))
    res.sent = n
    _, pending = await asyncio.wait(tasks, timeout=timeout_s + drain_s)
    for t in pending:
        t.cancel()
        res.error("unfinished")
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    res.sent_rate = (n - 1) / (last_start - first_start) if n > 1 and last_start > first_start else float(n)
    res.done_rate = res.ok / (last_done - t0) if last_done > t0 else 0.0
    return res
