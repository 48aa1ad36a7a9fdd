"""``mqgate serve`` and ``mqgate worker``: the whole stack, or the bundled worker, in one process.

``serve`` runs the api, a dispatcher, the controller and the bundled worker on one event loop.
It uses the in-process transport unless MQGATE_AMQP_URL is set, and in-memory caches unless
MQGATE_REDIS_URL or MQGATE_REDIS_SENTINELS is set. The controller and the worker listen on
loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import urllib.parse
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from typing import Any

import aio_pika
import httpx
from redis import RedisError

from api.app import create_app
from consumers.inprocess import InProcessTransport
from consumers.rabbitmq import RabbitJobQueue
from consumers.reply_router import ReplyRouter
from consumers.runner import run_dispatcher
from consumers.transport import JobQueue, JobSource
from contracts.settings import Settings
from controller.app import create_controller_app
from controller.config import load_upstreams
from controller.registry import HashStore, MemoryHashStore
from discovery.cache import Cache, MemoryCache, RedisCache
from runtime.redis import redis_client
from runtime.servers import QuietServer, quiet_server, serve_in_background
from workers.files import LOCAL_EXTRA_HINT, ModelFileError, ModelPackageMissingError
from workers.loader import WorkerOptions, build_worker_app

log = logging.getLogger("mqgate.serve")

class StartupError(Exception):
    """``serve`` could not get the stack ready."""


def say(line: str) -> None:
    """A line for the person at the terminal, on stdout."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _server(app: Any, host: str, port: int, settings: Settings) -> QuietServer:
    return quiet_server(app, host, port, log_level=settings.log_level,
                        grace=settings.shutdown_grace)


class _Running:
    """The servers and tasks of ``serve``; ``aclose`` stops them, last started first."""

    def __init__(self, settings: Settings, stop: asyncio.Event) -> None:
        self._settings = settings
        self._stop = stop
        self._servers: list[QuietServer] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def serve(self, app: Any, sock: socket.socket) -> None:
        host, port = sock.getsockname()[:2]
        server = _server(app, host, port, self._settings)
        self._tasks.append(await serve_in_background(server, sock))
        self._servers.append(server)

    def run(self, coroutine: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(asyncio.create_task(coroutine))

    async def until_stopped(self) -> None:
        """Until a stop signal, or until any server or task ends."""
        waiter = asyncio.create_task(self._stop.wait())
        await asyncio.wait([waiter, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()

    async def aclose(self) -> None:
        self._stop.set()
        for server in reversed(self._servers):
            server.should_exit = True
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _listen(stack: AsyncExitStack, host: str, port: int, option: str) -> socket.socket:
    """A socket bound to ``host``:``port``, held until ``stack`` closes; StartupError when the
    port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise StartupError(f"cannot listen on {host}:{port}: {reason}; "
                           f"choose another port with {option}") from None
    stack.callback(sock.close)
    return sock


def _shown(url: str) -> str:
    """``url`` (or several, by commas) with passwords masked, for the terminal."""
    shown = []
    for one in url.split(","):
        parts = urllib.parse.urlsplit(one)
        if parts.password is not None:
            one = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@",
                                                             ":***@")).geturl()
        shown.append(one)
    return ",".join(shown)


def _uses_redis() -> bool:
    return "MQGATE_REDIS_URL" in os.environ or "MQGATE_REDIS_SENTINELS" in os.environ


def _redis_shown(settings: Settings) -> str:
    if settings.redis_sentinels:
        return (f"the primary {settings.redis_primary_name!r} of the sentinels at "
                f"{','.join(settings.redis_sentinels)}")
    return _shown(settings.redis_url)


async def _check_services(settings: Settings) -> None:
    """StartupError when RabbitMQ (one of its nodes) or Redis, where asked for, does not
    answer."""
    if _uses_redis():
        client = redis_client(settings, timeout=5)
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            raise StartupError(f"Redis at {_redis_shown(settings)} does not answer: "
                               f"{exc}") from None
        finally:
            await client.aclose()
    if "MQGATE_AMQP_URL" in os.environ:
        await _check_broker(settings.amqp_urls)


async def _check_broker(urls: list[str]) -> None:
    quiet = logging.getLogger("aiormq.connection")  # it would log our error first
    quiet.disabled = True
    problems = []
    try:
        for url in urls:
            try:
                connection = await aio_pika.connect(url, timeout=5)
            except (OSError, TimeoutError, aio_pika.exceptions.AMQPError) as exc:
                problems.append(f"{_shown(url)}: {exc}")
                continue
            await connection.close()
            return
    finally:
        quiet.disabled = False
    raise StartupError(f"RabbitMQ at {' nor at '.join(problems)} does not answer")


async def _wait_models(controller_url: str, models: list[str]) -> None:
    async with httpx.AsyncClient(timeout=2) as client:
        while True:
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                found = (await client.post(controller_url + "/list_models")).json()["models"]
                if all(m in found for m in models):
                    return
            await asyncio.sleep(0.1)


async def _wait_ready(settings: Settings, models: list[str], seconds: float) -> None:
    """Until the controller lists ``models``; StartupError after ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            await _wait_models(settings.controller_url, models)
    except TimeoutError:
        problem = (f"the bundled worker's models ({', '.join(models)}) were not registered "
                   f"with the controller at {settings.controller_url} within {seconds:g} s")
        if _uses_redis():
            problem += f"; the controller keeps them in Redis: is {_redis_shown(settings)} up?"
        raise StartupError(problem) from None


def _local_worker(options: WorkerOptions, worker_port: int,
                  controller_url: str) -> tuple[Any, list[str]]:
    """The bundled worker, or (None, []) when the local extra is absent and no model was
    asked for."""
    try:
        return build_worker_app(options, address=f"http://127.0.0.1:{worker_port}",
                                controller_url=controller_url)
    except (ImportError, ModelPackageMissingError) as exc:
        if options.model_path is not None:
            raise ModelFileError(f"serving {options.model_path} needs llama-cpp-python; "
                                 f"{LOCAL_EXTRA_HINT}") from exc
        say("The bundled models are not installed, so mqgate serves external workers "
            f"only: register FastChat workers with the controller at {controller_url}. "
            'For the local models: pip install "mqgate[local]"')
        return None, []


async def _job_queue(settings: Settings,
                     stack: AsyncExitStack) -> tuple[JobQueue, JobSource | None, str]:
    if "MQGATE_AMQP_URL" in os.environ:
        queue = await stack.enter_async_context(
            RabbitJobQueue(settings, ReplyRouter(settings.reply_buffer)))
        return queue, None, f"RabbitMQ at {_shown(settings.amqp_url)}"
    transport = InProcessTransport(settings)
    stack.push_async_callback(transport.stop_consuming)
    return transport, transport, "in-process queue"


def _caches(settings: Settings, stack: AsyncExitStack) -> tuple[Cache, HashStore | None]:
    if _uses_redis():
        cache = RedisCache(redis_client(settings, timeout=settings.redis_timeout))
        stack.push_async_callback(cache.aclose)
        return cache, None
    memory = MemoryCache()  # the registry's notices reach the in-process dispatcher through it
    return memory, MemoryHashStore(relay=memory.publish)


async def serve(settings: Settings, *, host: str, port: int, controller_port: int,
                worker_port: int, options: WorkerOptions, startup_timeout: float) -> None:
    controller_url = f"http://127.0.0.1:{controller_port}"
    # the api's /metrics shows the whole process: no separate dispatcher port
    settings = settings.model_copy(update={"controller_url": controller_url,
                                           "metrics_port": 0})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with AsyncExitStack() as stack:
        # ports taken, services answering and the model loaded before anything starts: a
        # failure is one line, with nothing to stop
        api_socket = _listen(stack, host, port, "--port")
        controller_socket = _listen(stack, "127.0.0.1", controller_port, "--controller-port")
        await _check_services(settings)
        worker_app, models = _local_worker(options, worker_port, controller_url)
        worker_socket = (_listen(stack, "127.0.0.1", worker_port, "--worker-port")
                         if worker_app is not None else None)
        cache, store = _caches(settings, stack)
        queue, source, transport_name = await _job_queue(settings, stack)
        running = _Running(settings, stop)
        stack.push_async_callback(running.aclose)
        await running.serve(create_controller_app(settings, store), controller_socket)
        if worker_socket is not None:
            await running.serve(worker_app, worker_socket)
        running.run(run_dispatcher(settings, stop, source=source, cache=cache))
        await running.serve(create_app(settings, queue=queue, cache=cache), api_socket)
        if models:
            await _wait_ready(settings, models, startup_timeout)
        say(f"mqgate serving OpenAI's API at http://{host}:{port}/v1 over the "
            f"{transport_name}")
        if settings.config:  # checked by the command line before serve started
            models = [*models, *load_upstreams(settings.config).models()]
        say(f"models: {', '.join(models) if models else '(none yet: waiting for workers)'}")
        say("ready")
        await running.until_stopped()


async def run_worker(settings: Settings, *, host: str, port: int, address: str | None,
                     options: WorkerOptions) -> None:
    advertised = address or f"http://{host}:{port}"
    async with AsyncExitStack() as stack:
        sock = _listen(stack, host, port, "--port")
        app, models = build_worker_app(options, address=advertised,
                                       controller_url=settings.controller_url)
        log.info("serving %s at %s", ", ".join(models), advertised)
        server = _server(app, host, port, settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
        await server.serve(sockets=[sock])
