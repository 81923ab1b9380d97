"""The `request_log.recorded` event of a proxied call, built and published off the response path.

The publish is registered as pending before the client gets its answer, so a read that
follows the answer waits for it (see `pending.py`), while the bus's latency is never added
to the response.

A call judged by `op-criteria` made calls of its own while it was judged (each judge's call
comes back through this proxy and is logged in the same project). Its own log goes on the bus
only after those are acknowledged, so it is the project's latest log, as its client expects,
whatever the order the bus would otherwise have given them (a spooled judge log, say).

A log that neither the bus nor the spool can take (the bus down and the spool's disk full) is held
here and offered again until one of them takes it, and while any log is held the proxy refuses new
calls (507, `unkept`): the answers already sent keep their logs, and no call is answered whose log
could not be kept.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import orjson
from refinery.bus.producer import DurableProducer, EventTooLarge, NotKept, Position
from refinery.events.request_logs import RequestLogRecordedV2, request_log_recorded
from refinery.wire.openai_shapes import completion_id_of, error_message_of, usage_of
from refinery.wire.pricing import cost_usd

from proxy_router.chat_request import ChatRequest
from proxy_router.pending import PendingLogs

log = logging.getLogger("refinery.proxy_router")

HELD_RETRY_S = 0.5  # how often a held log is offered to the bus (and its spool) again


class CallLog:
    def __init__(self, producer: DurableProducer, pending: PendingLogs, held_retry_s: float = HELD_RETRY_S) -> None:
        self._producer = producer
        self._pending = pending
        self._held_retry_s = held_retry_s
        self._held = 0  # logs neither the bus nor the spool could take yet
        self._held_reason = ""

    def unkept(self) -> str | None:
        """Why logs cannot be kept right now (some are held in memory), or None when they can."""
        return self._held_reason if self._held else None

    def answered(
        self, call: ChatRequest, provider: str, status: int, resp: Any, *, ok: bool, cache_hit: bool = False,
    ) -> float | None:
        """An answer from the upstream (or the cache): its usage when it succeeded, its error when not."""
        if ok:
            return self.record(call, provider=provider, status_code=status, resp_payload=resp, usage=usage_of(resp),
                               completion_id=completion_id_of(resp), cache_hit=cache_hit)
        return self.record(call, provider=provider, status_code=status, resp_payload=resp,
                           error_message=error_message_of(resp) or f"upstream returned {status}")

    def judged(self, call: ChatRequest, provider: str, ranked: dict[str, Any], own: Any, *,
               cache_hit: bool = False) -> None:
        """A completion ranked by op-criteria: logged as answered, with the results. Its usage and cost
        are the completion's own (`own`, the answer before judging): the judges' calls are logged and
        costed by themselves, so the project's spend counts each token once."""
        self.record(call, provider=provider, status_code=200, resp_payload=ranked, usage=usage_of(own),
                    completion_id=completion_id_of(ranked), cache_hit=cache_hit)

    def streamed(self, call: ChatRequest, provider: str, completion: dict[str, Any], error: str | None) -> None:
        """A relayed stream: a 200 when it ended as streams do, else a 502 with what arrived and why not."""
        if error is None:
            self.answered(call, provider, 200, completion, ok=True)
        else:
            self.record(call, provider=provider, status_code=502, resp_payload=completion, usage=usage_of(completion),
                        completion_id=completion_id_of(completion), error_message=error)

    def unusable(self, call: ChatRequest, provider: str, resp: Any, message: str) -> None:
        """An upstream answer that cannot be relayed (answered as a 502): logged as it arrived, with why."""
        self.record(call, provider=provider, status_code=502, resp_payload=resp, error_message=message)

    def failed(self, call: ChatRequest, provider: str, status: int, message: str) -> None:
        """A call that got no answer from an upstream: the proxy's own error."""
        self.record(call, provider=provider, status_code=status, error_message=message)

    def record(self, call: ChatRequest, **fields: Any) -> float | None:
        """Publishes the call's log; returns its cost (None when unknown, or when the call is not logged)."""
        if not call.log_enabled:
            return cost_usd(call.model, fields.get("usage"), call.prices)
        fields = {**call.log_fields(), **fields, "completed_at": time.time() * 1000}
        if "usage" in fields:
            fields["cost_usd"] = cost_usd(fields["model"], fields["usage"], call.prices)
        record = RequestLogRecordedV2(source="proxy", received_at=time.time() * 1000, **fields)
        try:
            value = request_log_recorded(call.project_id, record).to_bytes()
        except orjson.JSONEncodeError:
            # An upstream answer nested deeper than orjson writes: keep it as JSON text, never drop it.
            text = {k: json.dumps(fields.get(k)) for k in ("req_payload", "resp_payload")}
            value = request_log_recorded(call.project_id, record.model_copy(update=text)).to_bytes()
        after = self._pending.inflight(call.project_id) if call.criteria else None
        publish = asyncio.ensure_future(self._publish(call.project_id.encode(), value, after))
        self._pending.track(call.project_id, publish)
        return fields.get("cost_usd")

    async def _publish(self, key: bytes, value: bytes,
                       after: list[asyncio.Future[Position | None]] | None = None) -> Position | None:
        """The log on the bus (once the publishes in `after` are done), or, when the bus can never take
        one this large, in the dead-letter file with the reason (the answer was already sent: there is
        no client left to tell)."""
        if after:
            await asyncio.gather(*after, return_exceptions=True)
        try:
            return await self._producer.publish(key, value)
        except EventTooLarge as exc:
            await asyncio.to_thread(self._producer.set_aside, key, value, f"log of a proxied call: {exc}")
            return None
        except NotKept as exc:
            return await self._hold(key, value, exc)

    async def _hold(self, key: bytes, value: bytes, exc: NotKept) -> Position | None:
        """Offers the log again until the bus or the spool takes it; new calls are refused meanwhile."""
        self._held += 1
        self._held_reason = str(exc)
        log.error("a call log could not be kept (%s); holding %d and refusing new calls until it can", exc,
                  self._held)
        try:
            while True:
                await asyncio.sleep(self._held_retry_s)
                try:
                    position = await self._producer.publish(key, value)
                except NotKept as again:
                    self._held_reason = str(again)
                    continue
                log.info("a held call log was kept; %d still held", self._held - 1)
                return position
        finally:
            self._held -= 1
