"""``mqgate serve`` and ``mqgate worker``: the whole stack, or the bundled worker, in one process.

``serve`` runs the api, a dispatcher, the controller and the bundled worker on one event loop.
It uses the in-process transport unless MQGATE_AMQP_URL is set, and in-memory caches unless
MQGATE_REDIS_URL is set. The controller and the worker listen on loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from api.app import create_app
from consumers.health import QuietServer, quiet_server, serve_in_background
from consumers.inprocess import InProcessTransport
from consumers.rabbitmq import RabbitJobQueue
from consumers.reply_router import ReplyRouter
from consumers.runner import run_dispatcher
from consumers.transport import JobQueue, JobSource
from contracts.settings import Settings
from controller.app import create_controller_app
from controller.registry import MemoryHashStore
from dispatcher.cache import Cache, MemoryCache, RedisCache
from workers.files import ModelPackageMissingError

log = logging.getLogger("mqgate.serve")

CHAT_MODEL = "smollm2-135m-instruct"
EMBEDDING_MODEL = "all-minilm-l6-v2"


@dataclass(frozen=True, kw_only=True)
class WorkerOptions:
    model_path: Path | None = None
    chat_name: str | None = None
    conv_template: str | None = None
    context_length: int = 2048
    threads: int | None = None
    embeddings: bool = True


def say(line: str) -> None:
    """A line for the person at the terminal, on stdout."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def build_worker_app(options: WorkerOptions, *, address: str,
                     controller_url: str | None) -> tuple[Any, list[str]]:
    """The bundled worker app and its model names; raises ImportError without the extra."""
    from workers.app import WorkerConfig, create_worker_app
    from workers.chat import ChatModel
    from workers.embeddings import Embedder
    from workers.files import MINILM, SMOLLM2

    if options.model_path is None:
        path, name = SMOLLM2.verified(), options.chat_name or CHAT_MODEL
    else:
        path, name = options.model_path, options.chat_name or options.model_path.stem.lower()
    chat = ChatModel(path, n_ctx=options.context_length, threads=options.threads,
                     template_override=options.conv_template)
    embedder = Embedder(MINILM.verified()) if options.embeddings else None
    config = WorkerConfig(address=address, controller_url=controller_url, chat_name=name,
                          embedding_name=EMBEDDING_MODEL if embedder else None, chat=chat,
                          embedder=embedder)
    return create_worker_app(config), config.model_names


def _server(app: Any, host: str, port: int, settings: Settings) -> QuietServer:
    return quiet_server(app, host, port, log_level=settings.log_level,
                        grace=settings.shutdown_grace)


async def _wait_models(controller_url: str, models: list[str]) -> None:
    async with httpx.AsyncClient(timeout=2) as client, asyncio.timeout(60):
        while True:
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                found = (await client.post(controller_url + "/list_models")).json()["models"]
                if all(m in found for m in models):
                    return
            await asyncio.sleep(0.1)


async def serve(settings: Settings, *, host: str, port: int, controller_port: int,
                worker_port: int, options: WorkerOptions) -> None:
    controller_url = f"http://127.0.0.1:{controller_port}"
    # the api's /metrics shows the whole process: no separate dispatcher port
    settings = settings.model_copy(update={"controller_url": controller_url,
                                           "metrics_port": 0})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with AsyncExitStack() as stack:
        cache: Cache
        if "MQGATE_REDIS_URL" in os.environ:
            cache = RedisCache(settings.redis_url, timeout=settings.redis_timeout)
            stack.push_async_callback(cache.aclose)
            store = None
        else:
            cache, store = MemoryCache(), MemoryHashStore()
        queue: JobQueue
        source: JobSource | None
        if "MQGATE_AMQP_URL" in os.environ:
            queue = await stack.enter_async_context(
                RabbitJobQueue(settings, ReplyRouter(settings.reply_buffer)))
            source, transport_name = None, f"RabbitMQ at {settings.amqp_url}"
        else:
            queue = source = InProcessTransport(settings)
            transport_name = "in-process queue"
        servers: list[tuple[QuietServer, asyncio.Task[None]]] = []

        async def start(app: Any, bind: str, bind_port: int) -> None:
            server = _server(app, bind, bind_port, settings)
            servers.append((server, await serve_in_background(server)))

        await start(create_controller_app(settings, store), "127.0.0.1", controller_port)
        models: list[str] = []
        try:
            worker_address = f"http://127.0.0.1:{worker_port}"
            worker_app, models = build_worker_app(options, address=worker_address,
                                                  controller_url=controller_url)
            await start(worker_app, "127.0.0.1", worker_port)
        except (ImportError, ModelPackageMissingError):
            say("The bundled models are not installed, so mqgate serves external workers "
                  f"only: register FastChat workers with the controller at {controller_url}. "
                  'For the local models: pip install "mqgate[local]"')
        dispatcher = asyncio.create_task(run_dispatcher(settings, stop, source=source,
                                                        cache=cache))
        await start(create_app(settings, queue=queue, cache=cache), host, port)
        if models:
            await _wait_models(controller_url, models)
        say(f"mqgate serving OpenAI's API at http://{host}:{port}/v1 over the "
            f"{transport_name}")
        say(f"models: {', '.join(models) if models else '(none yet: waiting for workers)'}")
        say("ready")
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait([waiter, dispatcher, *(t for _s, t in servers)],
                           return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        for server, _task in reversed(servers):
            server.should_exit = True
        await asyncio.gather(dispatcher, *(t for _s, t in servers), return_exceptions=True)
        if source is not None:
            await source.stop_consuming()


async def run_worker(settings: Settings, *, host: str, port: int, address: str | None,
                     options: WorkerOptions) -> None:
    advertised = address or f"http://{host}:{port}"
    app, models = build_worker_app(options, address=advertised,
                                   controller_url=settings.controller_url)
    log.info("serving %s at %s", ", ".join(models), advertised)
    server = _server(app, host, port, settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    await server.serve()


