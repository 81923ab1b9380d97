"""Position-bound reads: a read sees every write acknowledged before it arrived.

The gateway remembers, per project, the position just past the last log it acknowledged
(from the broker's produce acks, never from ListOffsets, which Tansu gets wrong), asks
proxy-router for the positions of the project's proxied calls still being published, and
hands both to log-ingest, which answers only after storing through them.
"""

from __future__ import annotations

import grpc
from refinery.bus.producer import DurableProducer, Position
from refinery.grpc_server import client_channel
from refinery.rpc import logs_pb2, proxy_pb2, proxy_pb2_grpc


class BusUnavailable(Exception):
    """Earlier writes of the project are only in the local spool: a read could not see them."""


class ReadBinder:
    """Knows what each project's reads must wait for.

    `baseline` holds the positions of a marker the gateway wrote to every partition when it
    started: everything acknowledged before this process existed (by an instance that crashed,
    say) lies below it, so until it is known reads answer 503 rather than risk a stale answer.
    """

    def __init__(self, proxy_grpc: str | None) -> None:
        self.baseline: dict[int, int] | None = None
        self._acked: dict[str, dict[int, int]] = {}
        self._spooled: dict[str, int] = {}
        self._proxy_stub = proxy_pb2_grpc.ProxyRouterStub(client_channel(proxy_grpc)) if proxy_grpc else None

    def acknowledged(self, project_id: str, pos: Position | None) -> None:
        if pos is None:
            self._spooled[project_id] = self._spooled.get(project_id, 0) + 1
            return
        per = self._acked.setdefault(project_id, {})
        if per.get(pos.partition, 0) < pos.offset:
            per[pos.partition] = pos.offset

    def spool_drained(self) -> None:
        self._spooled.clear()

    def has_spooled(self, project_id: str) -> bool:
        return self._spooled.get(project_id, 0) > 0

    async def bound(self, project_id: str, producer: DurableProducer, wait_s: float) -> list[logs_pb2.Position]:
        """The positions a read of the project must wait for, once its spooled writes (if any) reached
        the bus; BusUnavailable when they do not within `wait_s`, or the positions cannot be known."""
        if self.has_spooled(project_id):
            if not await producer.wait_spool_drained(wait_s):
                raise BusUnavailable("Earlier logs are spooled until the bus is back; retry")
            self.spool_drained()
        return await self.positions(project_id)

    async def positions(self, project_id: str) -> list[logs_pb2.Position]:
        if self.baseline is None:
            raise BusUnavailable("the gateway has not reached the bus since it started; retry shortly")
        merged = dict(self.baseline)
        for partition, offset in self._acked.get(project_id, {}).items():
            merged[partition] = max(merged.get(partition, 0), offset)
        if self._proxy_stub is not None:
            try:
                resp = await self._proxy_stub.PendingLogs(
                    proxy_pb2.PendingLogsRequest(project_id=project_id), timeout=10
                )
            except grpc.aio.AioRpcError as exc:
                raise BusUnavailable(f"proxy-router did not answer: {exc.code().name}") from exc
            if resp.spooled:
                raise BusUnavailable("proxied calls are spooled locally until the bus is back")
            for p in resp.positions:
                if merged.get(p.partition, 0) < p.offset:
                    merged[p.partition] = p.offset
        return [logs_pb2.Position(partition=k, offset=v) for k, v in merged.items()]
