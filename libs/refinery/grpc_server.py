"""gRPC servers built by one factory: dependencies in, a started server with health out.

Every server refuses calls without the deployment's service token (UNAUTHENTICATED, one constant
message) except the health service, which probes and the stack supervisor call bare; every client
channel attaches the process's token (see refinery.internal_auth).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from refinery import internal_auth

HEALTH_PREFIX = "/grpc.health.v1.Health/"
_MESSAGE_LIMITS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]


class GrpcService:
    """A started grpc.aio server and its health servicer (SERVING once the service is ready)."""

    def __init__(self, server: grpc.aio.Server, health_servicer: health.aio.HealthServicer, port: int):
        self.server = server
        self.health = health_servicer
        self.port = port

    async def set_serving(self, serving: bool = True) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self.health.set("", status)

    async def stop(self, grace: float = 2.0) -> None:
        await self.server.stop(grace)


async def _refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, internal_auth.REFUSED)


def _refusing(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` (so the request still decodes) that only refuses."""
    args = {"request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer}
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(_refuse, **args)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(_refuse, **args)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(_refuse, **args)
    return grpc.unary_unary_rpc_method_handler(_refuse, **args)


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuses every call but health whose metadata lacks the token (compared in constant time)."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(HEALTH_PREFIX):
            return handler
        given = next((value for key, value in handler_call_details.invocation_metadata or ()
                      if key == internal_auth.HEADER), None)
        if internal_auth.matches(given, self._token):
            return handler
        return _refusing(handler)


async def start_grpc(
    host: str, port: int, register: list[Callable[[grpc.aio.Server], None]], *, token: str | None = None,
) -> GrpcService:
    """A started server on `host:port` with `register`'s servicers and health. Calls need `token`
    (default: the process's, see refinery.internal_auth); with neither, the server is open (bare
    test servers only: the kernel always installs a token)."""
    token = token or internal_auth.current_token()
    interceptors = [TokenInterceptor(token)] if token else []
    server = grpc.aio.server(options=_MESSAGE_LIMITS, interceptors=interceptors)
    for add in register:
        add(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    service = GrpcService(server, health_servicer, bound)
    await service.set_serving(False)
    return service


class _Attach:
    """Adds the token to a call's metadata."""

    def __init__(self, token: str) -> None:
        self._pair = (internal_auth.HEADER, token)

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        metadata.add(*self._pair)
        return grpc.aio.ClientCallDetails(details.method, details.timeout, metadata, details.credentials,
                                          details.wait_for_ready)


# grpc.aio files each interceptor under the first call shape it implements, so one class per shape.
class _AttachUnaryUnary(_Attach, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(self._details(client_call_details), request)


class _AttachUnaryStream(_Attach, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(self._details(client_call_details), request)


class _AttachStreamUnary(_Attach, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: Any, client_call_details: Any,
                                     request_iterator: Any) -> Any:
        return await continuation(self._details(client_call_details), request_iterator)


class _AttachStreamStream(_Attach, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: Any, client_call_details: Any,
                                      request_iterator: Any) -> Any:
        return await continuation(self._details(client_call_details), request_iterator)


def client_channel(target: str, *, token: str | None = None) -> grpc.aio.Channel:
    """A channel to another service whose calls carry `token` (default: the process's)."""
    token = token or internal_auth.current_token()
    interceptors: list[grpc.aio.ClientInterceptor] | None = [
        shape(token) for shape in (_AttachUnaryUnary, _AttachUnaryStream, _AttachStreamUnary, _AttachStreamStream)
    ] if token else None
    return grpc.aio.insecure_channel(target, options=_MESSAGE_LIMITS, interceptors=interceptors)


async def check_health(target: str, timeout_s: float = 1.0) -> bool:
    async with client_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            resp = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
        except grpc.aio.AioRpcError:
            return False
        return resp.status == health_pb2.HealthCheckResponse.SERVING
