"""The service kernel: start-up, readiness and an ordered shutdown, written once for every service.

A service's `main` module is a `build` coroutine that declares its parts to a `Kernel`, in the
order they depend on each other, and the `main` that `service_main` makes of it:

    async def build(k: Kernel[TrainerSettings]) -> None:
        jobs = await k.store(JobStore, k.settings.db_url())
        producer = await k.producer(k.settings.models_topic)
        k.outbox(jobs, producer)
        await k.follow(k.settings.models_topic, subscriptions(jobs), jobs)
        await k.grpc(k.settings.grpc_host, k.settings.health_port)

    main = service_main("trainer", TrainerSettings, build)

Every part is registered on one `contextlib.AsyncExitStack` as it starts, so:
- a failure during start-up unwinds exactly what had started, newest first, and the process
  exits non-zero (`StartupFailed`);
- on SIGTERM/SIGINT the kernel first marks gRPC health NOT_SERVING (balancers and the stack
  supervisor stop sending work), then unwinds the stack in reverse order of start: the servers
  that take requests stop first (intake), then workers and followers, then the outbox relay
  drains what is committed, then the producers flush and the stores close.
`started` and `stopped` name each part as that happens (for logs and tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any, Generic, Protocol, TypeVar

import grpc
import uvicorn
from aiohttp import web

from refinery import internal_auth, logging_setup
from refinery.bus.dead_letters import DeadLetterSink
from refinery.bus.follower import Follower, OffsetStore
from refinery.bus.producer import DurableProducer
from refinery.bus.topics import ensure_topics
from refinery.config import ObjectStoreSettings, ServiceSettings
from refinery.grpc_server import GrpcService, client_channel, start_grpc
from refinery.runtime.subscriptions import Subscriptions
from refinery.stores.eventstore import EventSourcedStore, OutboxRelay
from refinery.stores.objectstore import ObjectStore

S = TypeVar("S", bound=ServiceSettings)
T = TypeVar("T")

Build = Callable[["Kernel[S]"], Awaitable[None]]
P = TypeVar("P", bound="Startable")


class Startable(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class StartupFailed(Exception):
    """A part failed to start; every part started before it was stopped."""


class Kernel(Generic[S]):
    """What one service process runs: its settings, its parts and their lifecycle."""

    def __init__(self, name: str, settings: S) -> None:
        self.name = name
        self.settings = settings
        self.log = logging.getLogger(f"refinery.{name.replace('-', '_')}")
        self.started: list[str] = []
        self.stopped: list[str] = []
        self._stack: contextlib.AsyncExitStack | None = None
        self._stop = asyncio.Event()
        self._grpc: list[GrpcService] = []
        self._readiness: list[Callable[[], Awaitable[object]]] = []
        self.ready = asyncio.Event()
        self.internal_token = ""  # set by serve (see refinery.internal_auth)
        self._dead_letters: DeadLetterSink | None = None
        self._announcing: set[asyncio.Task[str]] = set()

    # ---- registering parts ----------------------------------------------------------------

    @property
    def stack(self) -> contextlib.AsyncExitStack:
        if self._stack is None:
            raise RuntimeError("parts are declared inside Kernel.serve's build")
        return self._stack

    def on_stop(self, name: str, stop: Callable[[], Awaitable[object]]) -> None:
        """Register `stop` to run at shutdown (or when start-up fails), after the parts started later."""
        self.started.append(name)

        async def run() -> None:
            try:
                await stop()
            except Exception:
                self.log.exception("stopping %s failed", name)
            finally:
                self.stopped.append(name)

        self.stack.push_async_callback(run)

    async def part(self, name: str, part: P) -> P:
        """Start a part with `start()`/`stop()` coroutines and stop it at shutdown."""
        await part.start()
        self.on_stop(name, part.stop)
        return part

    async def thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Blocking start-up work (a model load, a conversion) off the event loop."""
        return await asyncio.to_thread(fn, *args)

    async def store(self, factory: Callable[..., T], *args: Any) -> T:
        """Open a store (its constructor does blocking I/O, so off the loop); closed at shutdown."""
        store = await asyncio.to_thread(factory, *args)
        close = getattr(store, "close", None)
        name = type(store).__name__
        if close is None:
            self.started.append(name)
        else:
            self.on_stop(name, lambda: asyncio.to_thread(close))
        return store

    async def objects(self, bucket: str, *, create: bool = True) -> ObjectStore:
        """A client of the object store's `bucket` (created when missing, unless `create` is off)."""
        s = self.settings
        if not isinstance(s, ObjectStoreSettings):
            raise TypeError(f"{type(s).__name__} has no object-store settings")
        objects = ObjectStore(s.s3_endpoint, s.s3_access_key, s.s3_secret_key, bucket, secure=s.s3_secure)
        if create:
            await asyncio.to_thread(objects.ensure_bucket)
        self.started.append(f"objects {bucket}")
        return objects

    async def topics(self, *topics: str) -> None:
        """Create the topics this service writes or reads, with the configured partition count."""
        await ensure_topics(self.settings.bus_bootstrap, dict.fromkeys(topics, self.settings.topic_partitions))

    async def producer(self, topic: str, spool: str = "spool", **options: Any) -> DurableProducer:
        """A durable producer for `topic`, spooling to `<data dir>/<service>/<spool>`. A record it sets
        aside for good (too large for the bus) is also announced on the dead-letter topic."""
        sink = await self.dead_letters() if topic != self.settings.dead_letters_topic else None
        options.setdefault("max_event_bytes", self.settings.bus_max_event_bytes)
        producer = DurableProducer(self.settings.bus_bootstrap, topic, self.settings.service_dir(self.name) / spool,
                                   **options)
        if sink is not None:
            producer.on_set_aside = self._announcer(sink, producer)
        return await self.part(f"producer {topic}", producer)

    async def dead_letters(self) -> DeadLetterSink:
        """This service's dead-letter sink (see `refinery.bus.dead_letters`), started once, before the
        parts that use it, so it stops after them."""
        if self._dead_letters is None:
            topic = self.settings.dead_letters_topic
            await self.topics(topic)
            producer = await self.producer(topic, spool="dead-letter-spool")
            self._dead_letters = DeadLetterSink(producer, self.name)
        return self._dead_letters

    def _announcer(self, sink: DeadLetterSink, producer: DurableProducer) -> Callable[[bytes, bytes, str], None]:
        loop = asyncio.get_running_loop()

        def publish(key: bytes, value: bytes, reason: str) -> None:
            task = loop.create_task(sink.set_aside(
                topic=producer.topic, key=key, value=value,
                reason=f"{reason}; kept whole in {producer.dead_letters.path}"))
            self._announcing.add(task)
            task.add_done_callback(self._announced)

        def announce(key: bytes, value: bytes, reason: str) -> None:
            loop.call_soon_threadsafe(publish, key, value, reason)

        return announce

    def _announced(self, task: asyncio.Task[str]) -> None:
        self._announcing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("announcing a dead letter failed (it is kept in the dead-letter file): %s",
                           task.exception())

    def outbox(self, store: EventSourcedStore, producer: DurableProducer) -> OutboxRelay:
        """Publish `store`'s outbox through `producer`; at shutdown it drains before the producer stops."""
        relay = OutboxRelay(store.engine, producer)
        store.on_change = relay.notify
        relay.start()
        self.on_stop(f"outbox {type(store).__name__}", relay.stop)
        return relay

    async def follow(self, topic: str, subscriptions: Subscriptions, offsets: OffsetStore,
                     **options: Any) -> Follower:
        """Deliver `topic`'s events to `subscriptions`, resuming at the offsets `offsets` keeps."""
        options.setdefault("dead_letters", await self.dead_letters())
        follower = Follower(self.settings.bus_bootstrap, topic, subscriptions, offsets, **options)
        return await self.part(f"follower {subscriptions.name} {topic}", follower)

    def task(self, name: str, coro: Coroutine[Any, Any, object]) -> asyncio.Task[object]:
        """A background task of the service, cancelled at shutdown."""
        task = asyncio.create_task(coro, name=name)

        async def cancel() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        self.on_stop(name, cancel)
        return task

    def channel(self, target: str) -> grpc.aio.Channel:
        """A gRPC client channel to another service, closed at shutdown."""
        channel = client_channel(target)
        self.on_stop(f"channel {target}", channel.close)
        return channel

    async def grpc(self, host: str, port: int, *servicers: tuple[Any, Callable[[Any, grpc.aio.Server], None]]
                   ) -> GrpcService:
        """The service's gRPC server with health (NOT_SERVING until the service is ready); each of
        `servicers` is a servicer and its generated `add_<Name>Servicer_to_server`."""
        service = await start_grpc(host, port, [partial(_add, servicer, add) for servicer, add in servicers],
                                   token=self.internal_token)
        self._grpc.append(service)
        self.on_stop(f"grpc :{service.port}", service.stop)
        return service

    async def http(self, app: Any, host: str, port: int) -> int:
        """An internal aiohttp application on `host:port`; returns the bound port. Every route but
        /health answers 401 without the internal token."""
        app.middlewares.append(internal_auth.http_guard(self.internal_token))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        server = site._server
        bound = server.sockets[0].getsockname()[1] if isinstance(server, asyncio.Server) else port
        self.on_stop(f"http :{bound}", runner.cleanup)
        return bound

    async def asgi(self, app: Any, host: str, port: int, **options: Any) -> int:
        """An ASGI application under uvicorn on `host:port` (bound here, so a taken port fails start-up)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except BaseException:
            sock.close()
            raise
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=5, **options)
        config.load()
        # uvicorn's startup / main loop / shutdown, driven here: the kernel owns the signals.
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        try:
            await server.startup(sockets=[sock])
        except BaseException:
            sock.close()
            raise
        serving = asyncio.create_task(server.main_loop(), name="asgi")
        bound = sock.getsockname()[1]

        async def stop() -> None:
            server.should_exit = True
            await serving
            await server.shutdown(sockets=[sock])
            sock.close()

        self.on_stop(f"asgi :{bound}", stop)
        return bound

    def ready_when(self, check: Callable[[], Awaitable[object]]) -> None:
        """Hold readiness (gRPC health SERVING) until `check()` returns, after start-up."""
        self._readiness.append(check)

    # ---- running ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the service to shut down (what SIGTERM does)."""
        self._stop.set()

    async def _become_ready(self) -> None:
        for check in self._readiness:
            await check()
        for service in self._grpc:
            await service.set_serving(True)
        self.ready.set()

    async def serve(self, build: Build[S], *, signals: bool = True) -> None:
        """Run `build`, serve until stopped, then shut down in order. Raises StartupFailed when
        `build` fails, after stopping what it had started."""
        loop = asyncio.get_running_loop()
        if signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self._stop.set)
        try:
            async with contextlib.AsyncExitStack() as stack:
                self._stack = stack
                try:
                    # Every server this process starts refuses calls without it; every client attaches it.
                    self.internal_token = self.settings.service_token()
                    internal_auth.use_token(self.internal_token)
                    await build(self)
                except Exception as exc:
                    self.log.error("%s failed to start (%s: %s); stopping the %d parts started",
                                   self.name, type(exc).__name__, exc, len(self.started))
                    raise StartupFailed(f"{self.name}: {type(exc).__name__}: {exc}") from exc
                ready = asyncio.create_task(self._become_ready(), name="readiness")
                self.log.warning("%s started: %s", self.name, ", ".join(self.started))
                try:
                    await self._stop.wait()
                finally:
                    ready.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await ready
                    # Not serving first: health checks turn away new work before anything stops.
                    for service in self._grpc:
                        with contextlib.suppress(Exception):
                            await service.set_serving(False)
        finally:
            self._stack = None
            self._dead_letters = None
            if signals:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)


def _add(servicer: Any, add: Callable[[Any, grpc.aio.Server], None], server: grpc.aio.Server) -> None:
    add(servicer, server)


def service_main(name: str, settings_type: type[S], build: Build[S], *, use_uvloop: bool = False
                 ) -> Callable[[], None]:
    """A service module's whole `main`: `main = service_main("trainer", TrainerSettings, build)`."""
    return partial(run_service, name, settings_type, build, use_uvloop=use_uvloop)


def run_service(name: str, settings_type: type[S], build: Build[S], *, use_uvloop: bool = False) -> None:
    """A service process's whole `main`: settings validated, logging configured, `build` served."""
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` dumps every thread's stack to the log
    settings = settings_type()
    logging_setup.configure(name, settings.log_level)
    kernel = Kernel(name, settings)
    if use_uvloop:
        import uvloop

        runner: Callable[[Coroutine[Any, Any, None]], None] = uvloop.run
    else:
        runner = asyncio.run
    try:
        runner(kernel.serve(build))
    except KeyboardInterrupt:
        pass
    except StartupFailed:
        sys.exit(1)
