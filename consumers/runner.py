"""A dispatcher process: consume jobs until told to stop, then drain and requeue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import AsyncExitStack

from consumers.cancel import CancelMarks
from consumers.job_consumer import JobRunner
from consumers.lanes import Capacity, LaneManager, LaneProgress
from consumers.rabbitmq_source import RabbitJobSource
from consumers.transport import JobSource
from contracts.settings import Settings
from discovery.cache import Cache, MemoryCache, RedisCache
from discovery.catalog import ModelCatalog
from discovery.controller import ControllerClient
from discovery.upstream_keys import UpstreamKeys
from dispatcher.capacity import WorkerCapacity
from dispatcher.capacity_store import MemorySlotStore, RedisSlotStore, SlotStore
from dispatcher.forwarder import WorkerClient
from dispatcher.resolver import WorkerResolver
from dispatcher.service import DispatchService
from dispatcher.upstream_client import UpstreamClient
from dispatcher.upstream_jobs import UpstreamJobs
from dispatcher.upstreams import UpstreamDirectory, slots_with_upstreams
from runtime.health import Check, create_health_app
from runtime.redis import redis_client
from runtime.servers import QuietServer, bind_first_free, quiet_server, serve_in_background

log = logging.getLogger(__name__)

async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _stop_server(server: QuietServer, task: asyncio.Task[None]) -> None:
    server.should_exit = True
    await task


async def _serve_health(stack: AsyncExitStack, settings: Settings,
                        checks: dict[str, Check]) -> None:
    """Serve /healthz, /readyz and /metrics on the first free port from
    ``MQGATE_METRICS_PORT``; with none free, run on without them (a dispatcher never dies for
    its side port)."""
    first, span = settings.metrics_port, settings.metrics_port_span
    sock = bind_first_free(settings.metrics_host, first, span)
    if sock is None:
        log.warning("no free port for health and metrics in %s:%d-%d; running without them",
                    settings.metrics_host, first, first + span - 1)
        return
    port = sock.getsockname()[1]
    # ready while it can take jobs; Redis and the controller only slow it down when they go
    app = create_health_app(checks, ready_when=("broker",))
    server = quiet_server(app, settings.metrics_host, port,
                          log_level=settings.log_level, grace=1.0)
    try:
        task = await serve_in_background(server, sock)
    except BaseException:
        sock.close()
        raise
    stack.push_async_callback(_stop_server, server, task)
    log.info("health and metrics on http://%s:%d", settings.metrics_host, port)


def _slot_store(stack: AsyncExitStack, settings: Settings, cache: Cache) -> SlotStore:
    """Worker slots beside a memory cache in memory (one process: ``mqgate serve``), else in
    Redis, shared by every dispatcher."""
    if isinstance(cache, MemoryCache):
        return MemorySlotStore()
    store = RedisSlotStore(redis_client(settings, timeout=settings.redis_timeout),
                           settings.topology)
    stack.push_async_callback(store.aclose)
    return store


def _upstreams(stack: AsyncExitStack, settings: Settings, controller: ControllerClient,
               cache: Cache) -> UpstreamJobs:
    """What runs the jobs of models that OpenAI-compatible upstreams serve."""
    client = UpstreamClient(connect_timeout=settings.worker_connect_timeout,
                            read_timeout=settings.worker_read_timeout)
    stack.push_async_callback(client.aclose)
    directory = UpstreamDirectory(controller, cache, settings, UpstreamKeys(settings.config))
    return UpstreamJobs(directory=directory, client=client, attempts=settings.worker_attempts)


def _service(stack: AsyncExitStack, settings: Settings, controller: ControllerClient,
             cache: Cache) -> tuple[DispatchService, Capacity]:
    """What runs one job (worker choice and slots, FastChat workers and upstreams), and what
    tells a model's slots."""
    workers = WorkerClient(connect_timeout=settings.worker_connect_timeout,
                           read_timeout=settings.worker_read_timeout)
    stack.push_async_callback(workers.aclose)
    resolver = WorkerResolver(controller, workers, cache, settings)
    capacity = WorkerCapacity(resolver, _slot_store(stack, settings, cache), cache, settings)
    upstreams = _upstreams(stack, settings, controller, cache)
    return DispatchService(
        resolver=resolver, workers=workers, capacity=capacity,
        attempts=settings.worker_attempts, embedding_batch_size=settings.embedding_batch_size,
        sep_styles=settings.fastchat_sep_styles, upstreams=upstreams,
    ), slots_with_upstreams(upstreams.directory, capacity.total_slots)


async def _follow_lanes(stack: AsyncExitStack, settings: Settings, source: JobSource,
                        slots: Capacity, controller: ControllerClient,
                        cache: Cache) -> asyncio.Task[None]:
    """Follow the models' lanes now, and as models come and go (until the task is cancelled)."""
    lanes = LaneManager(source, ModelCatalog(controller, cache, settings), slots, cache,
                        settings)
    await lanes.reconcile()
    following = asyncio.create_task(lanes.run())
    stack.push_async_callback(_cancel, following)
    log.info("dispatcher following %d lanes: %s", len(lanes.followed),
             ", ".join(f"{m} ({n})" for m, n in sorted(lanes.followed.items())) or "none yet")
    return following


async def run_dispatcher(settings: Settings, stop: asyncio.Event, *,
                         ready: asyncio.Event | None = None, source: JobSource | None = None,
                         cache: Cache | None = None) -> None:
    """Consume jobs until ``stop`` is set. ``source`` and ``cache`` default to RabbitMQ and
    Redis; when given, their owner starts and stops them."""
    async with AsyncExitStack() as stack:
        if cache is None:
            cache = RedisCache(redis_client(settings, timeout=settings.redis_timeout))
            stack.push_async_callback(cache.aclose)
        controller = ControllerClient(settings.controller_url,
                                      timeout=settings.controller_timeout)
        stack.push_async_callback(controller.aclose)
        service, slots = _service(stack, settings, controller, cache)
        if source is None:
            source = await stack.enter_async_context(RabbitJobSource(settings))
        runner = JobRunner(service, flush_interval=settings.stream_flush_interval,
                           cancelled_elsewhere=CancelMarks(source, cache, settings.topology)
                           .cancelled_unheard, took=LaneProgress(cache, settings).took)
        await source.consume(runner.handle, runner.cancel)
        following = await _follow_lanes(stack, settings, source, slots, controller, cache)
        if settings.metrics_port:
            await _serve_health(stack, settings, {
                "broker": source.ping, "redis": cache.ping, "controller": controller.ping})
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("stopping: no new jobs; waiting up to %.0fs for %d in flight",
                 settings.shutdown_grace, runner.in_flight)
        following.cancel()
        await source.stop_consuming()
        await runner.drain(settings.shutdown_grace)
