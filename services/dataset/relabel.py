"""Relabeling: regenerate entries' outputs with a chosen model through proxy-router.

Jobs run in the background with a concurrency limit; each finished entry is its own
`dataset.entry_relabeled` event and progress row, so a restarted service resumes a running
job with the entries still pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiohttp
import orjson
from refinery import internal_auth
from refinery.wire.entries import input_messages

from dataset.executors import RELABEL
from dataset.store import DatasetStore, NotFound

log = logging.getLogger("refinery.dataset")


class RelabelRunner:
    def __init__(self, store: DatasetStore, proxy_url: str | None, timeout_s: float = 120.0) -> None:
        self._store = store
        self._proxy_url = proxy_url.rstrip("/") if proxy_url else None
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._jobs: dict[str, asyncio.Task[None]] = {}

    @property
    def available(self) -> bool:
        return self._proxy_url is not None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self._timeout, headers=internal_auth.headers())
        for job in await RELABEL.run(self._store.relabel_jobs.running):
            self.launch(job)

    async def stop(self) -> None:
        for task in self._jobs.values():
            task.cancel()
        for task in self._jobs.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._session is not None:
            await self._session.close()

    def launch(self, job: dict[str, Any]) -> None:
        self._jobs[job["id"]] = asyncio.create_task(self._run(job))

    async def _run(self, job: dict[str, Any]) -> None:
        pending = await RELABEL.run(self._store.relabel_jobs.pending_entries, job["id"])
        sem = asyncio.Semaphore(max(1, job["concurrency"]))

        async def one(entry_id: str) -> None:
            async with sem:
                try:
                    output = await self._generate(job, entry_id)
                    await RELABEL.run(
                        self._store.relabel_jobs.relabeled, job["project_id"], job["dataset_id"], entry_id, job["id"],
                        job["model"], output, job["keep_rejected"],
                    )
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    await RELABEL.run(self._store.relabel_jobs.failed, job["id"], entry_id, str(exc) or repr(exc))

        await asyncio.gather(*(one(e) for e in pending))
        await RELABEL.run(self._store.relabel_jobs.finish, job["id"], "DONE")
        self._jobs.pop(job["id"], None)

    async def _generate(self, job: dict[str, Any], entry_id: str) -> dict[str, Any]:
        try:
            entry = await RELABEL.run(self._store.entries.entry, job["project_id"], job["dataset_id"], entry_id)
        except NotFound as exc:
            raise RuntimeError("the entry was deleted") from exc
        body: dict[str, Any] = {"model": job["model"], "messages": input_messages(entry)}
        if entry.tools:
            body["tools"] = entry.tools
        if entry.tool_choice is not None:
            body["tool_choice"] = entry.tool_choice
        if entry.response_format is not None:
            body["response_format"] = entry.response_format
        assert self._session is not None and self._proxy_url is not None
        async with self._session.post(
            f"{self._proxy_url}/v1/chat/completions", data=orjson.dumps(body),
            headers={"content-type": "application/json", "x-refinery-project-id": job["project_id"],
                     "op-log-request": "false"},
        ) as resp:
            raw = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"{job['model']} answered {resp.status}: {raw[:300].decode(errors='replace')}")
        message = orjson.loads(raw)["choices"][0]["message"]
        return {k: message[k] for k in ("role", "content", "tool_calls", "function_call") if message.get(k) is not None}
