"""The ``mqgate`` command: one subcommand per process kind."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

import uvicorn

from contracts.settings import Settings


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _serve_app(app: object, host: str, port: int, settings: Settings) -> None:
    uvicorn.run(app, host=host, port=port, log_level=settings.log_level.lower(),  # type: ignore[arg-type]
                access_log=False, loop="auto", http="auto", timeout_graceful_shutdown=
                int(settings.shutdown_grace))


def _run_api(args: argparse.Namespace, settings: Settings) -> None:
    from api.app import create_app

    _serve_app(create_app(settings), args.host, args.port, settings)


def _run_controller(args: argparse.Namespace, settings: Settings) -> None:
    from controller.app import create_controller_app

    _serve_app(create_controller_app(settings), args.host, args.port, settings)


def _run_dispatcher(args: argparse.Namespace, settings: Settings) -> None:
    from consumers.runner import run_dispatcher

    if args.concurrency is not None:
        settings = settings.model_copy(update={"concurrency": args.concurrency})

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_dispatcher(settings, stop)

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:  # pragma: no cover - uvloop is absent on some platforms
        asyncio.run(main())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mqgate", description="OpenAI-compatible gateway for FastChat-protocol workers, "
        "dispatched over RabbitMQ. Configure with MQGATE_* environment variables.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    api = commands.add_parser("api", help="run the OpenAI-compatible HTTP front")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.set_defaults(run=_run_api)

    dispatcher = commands.add_parser("dispatcher", help="run a dispatcher (job consumer)")
    dispatcher.add_argument("--concurrency", type=int, default=None,
                            help="jobs handled at once (prefetch); default MQGATE_CONCURRENCY")
    dispatcher.set_defaults(run=_run_dispatcher)

    controller = commands.add_parser("controller",
                                     help="run a FastChat-protocol controller (Redis registry)")
    controller.add_argument("--host", default="127.0.0.1")
    controller.add_argument("--port", type=int, default=21001)
    controller.set_defaults(run=_run_controller)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    settings = Settings()
    _configure_logging(settings)
    args.run(args, settings)


if __name__ == "__main__":
    main()
