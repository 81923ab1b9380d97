"""proxy-router's gRPC API: the positions of a project's logs still being published (read barrier)."""

from __future__ import annotations

from typing import Any

from refinery.bus.producer import DurableProducer
from refinery.rpc import logs_pb2, proxy_pb2, proxy_pb2_grpc

from proxy_router.pending import PendingLogs


class ProxyRouterServicer(proxy_pb2_grpc.ProxyRouterServicer):
    def __init__(self, pending: PendingLogs, producer: DurableProducer) -> None:
        self._pending = pending
        self._producer = producer

    async def PendingLogs(self, request: proxy_pb2.PendingLogsRequest, context: Any) -> proxy_pb2.PendingLogsResponse:
        positions, spooled = await self._pending.positions(request.project_id, lambda: self._producer.spool_empty)
        return proxy_pb2.PendingLogsResponse(
            positions=[logs_pb2.Position(partition=p.partition, offset=p.offset) for p in positions],
            spooled=spooled,
        )
