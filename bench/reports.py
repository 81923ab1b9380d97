"""Filling a stack with request logs for a bench's setup, as fast as the gateway takes them.

A closed loop of `POST /report` over aiohttp connections: an httpx client tops out near 80
reports a second on 2 cores, so the client, not the gateway, would set the pace of the setup.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

from bench.scenarios import progress


async def report_logs(api_base: str, api_key: str, n: int, report: Callable[[int], dict[str, Any]],
                      concurrency: int = 64, every: int = 20_000) -> None:
    """Reports `report(i)` for i in 0..n-1 over `concurrency` connections; a refused report raises."""
    sent = 0
    headers = {"authorization": f"Bearer {api_key}", "content-type": "application/json"}
    pending = iter(range(n))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            nonlocal sent
            for i in pending:
                async with session.post(f"{api_base}/report", data=orjson.dumps(report(i)), headers=headers) as resp:
                    resp.raise_for_status()
                    await resp.read()
                sent += 1
                if sent % every == 0:
                    progress(f"  {sent:,} logs reported")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
