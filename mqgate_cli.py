"""The ``mqgate`` command: one subcommand per process kind."""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import os
import signal
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path

import uvicorn

from contracts.settings import Settings
from runtime.logs import configure_logging
from workers.gguf import MAX_DEFAULT_CONTEXT
from workers.loader import WorkerOptions

STARTUP_TIMEOUT = 60  # seconds


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default; an option whose default is None says it in its help."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def _version() -> str:
    try:
        return importlib.metadata.version("mqgate")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed: pip install -e .)"


def _serve_app(app: object, host: str, port: int, settings: Settings) -> None:
    uvicorn.run(app, host=host, port=port, log_level=settings.log_level.lower(),  # type: ignore[arg-type]
                log_config=None, access_log=False, loop="auto", http="auto",
                timeout_graceful_shutdown=int(settings.shutdown_grace))


def _run_api(args: argparse.Namespace, settings: Settings) -> None:
    from api.app import create_app

    _serve_app(create_app(settings), args.host, args.port, settings)


def _with_config(args: argparse.Namespace, settings: Settings, command: str) -> Settings:
    """``settings`` with ``--config``, once the file is known to be usable (else exit with
    one line saying why)."""
    from contracts.upstream import ConfigError
    from controller.config import load_upstreams
    from runtime.config_file import ConfigFileError

    if args.config is not None:
        settings = settings.model_copy(update={"config": str(args.config)})
    if settings.config:
        try:
            load_upstreams(settings.config)
        except (ConfigError, ConfigFileError) as exc:
            sys.exit(f"mqgate {command}: {exc}")
    return settings


def _run_controller(args: argparse.Namespace, settings: Settings) -> None:
    from controller.app import create_controller_app

    settings = _with_config(args, settings, "controller")
    _serve_app(create_controller_app(settings), args.host, args.port, settings)


def _run_dispatcher(args: argparse.Namespace, settings: Settings) -> None:
    from consumers.runner import run_dispatcher

    if args.concurrency is not None:
        settings = settings.model_copy(update={"concurrency": args.concurrency})
    settings = _with_config(args, settings, "dispatcher")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_dispatcher(settings, stop)

    _run_async(main())


def _worker_options(args: argparse.Namespace) -> WorkerOptions:
    return WorkerOptions(model_path=args.model_path, chat_name=args.model_name,
                         conv_template=args.conv_template, context_length=args.context_length,
                         threads=args.threads, embeddings=not args.no_embeddings)


def _run_async(main: Coroutine[object, object, None]) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is absent on some platforms
        asyncio.run(main)
    else:
        uvloop.run(main)


def _run_serve(args: argparse.Namespace, settings: Settings) -> None:
    from mqgate_serve import StartupError, serve
    from workers.files import ModelFileError

    settings = _with_config(args, settings, "serve")
    try:
        _run_async(serve(settings, host=args.host, port=args.port,
                         controller_port=args.controller_port, worker_port=args.worker_port,
                         options=_worker_options(args),
                         startup_timeout=args.startup_timeout))
    except (ModelFileError, StartupError) as exc:
        sys.exit(f"mqgate serve: {exc}")


def _run_worker(args: argparse.Namespace, settings: Settings) -> None:
    from mqgate_serve import StartupError, run_worker
    from workers.files import ModelFileError

    try:
        _run_async(run_worker(settings, host=args.host, port=args.port, address=args.address,
                              options=_worker_options(args)))
    except ImportError as exc:
        sys.exit(f"mqgate worker needs the local models ({exc.name} is missing): "
                 'pip install "mqgate[local]"')
    except (ModelFileError, StartupError) as exc:
        sys.exit(f"mqgate worker: {exc}")


def _add_listen_options(parser: argparse.ArgumentParser, port: int) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=port, help="port to listen on")


def _add_config_option(parser: argparse.ArgumentParser, reads: str) -> None:
    parser.add_argument("--config", type=Path, default=None, metavar="FILE",
                        help="OpenAI-compatible upstreams in LiteLLM's model_list format "
                        f"(YAML): {reads} (default: MQGATE_CONFIG)")


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-path", type=Path, default=None, metavar="GGUF",
                        help="a GGUF chat model (default: the bundled SmolLM2-135M-Instruct)")
    parser.add_argument("--model-name", default=None, metavar="NAME",
                        help="the name clients ask for (default: smollm2-135m-instruct for the "
                        "bundled model, else the file's name without .gguf, in lower case)")
    parser.add_argument("--conv-template", default=None, metavar="NAME",
                        help="chatml, llama-3, gemma or mistral (default: from the GGUF)")
    parser.add_argument("--context-length", type=int, default=None, metavar="TOKENS",
                        help="tokens of context (default: the GGUF's own context length, at "
                        f"most {MAX_DEFAULT_CONTEXT}, as memory grows with it; set it to go "
                        "beyond)")
    parser.add_argument("--threads", type=int, default=None,
                        help="generation threads (default: 1 on machines with 2 cores or "
                        "fewer, else half the cores, at most 8)")
    parser.add_argument("--no-embeddings", action="store_true",
                        help="do not serve the bundled embedding model")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mqgate", formatter_class=_HelpFormatter,
        description="OpenAI-compatible gateway for FastChat-protocol workers, dispatched over "
        "RabbitMQ. Configure with MQGATE_* environment variables.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=summary, description=summary,
                                   formatter_class=_HelpFormatter)

    api = command("api", "run the OpenAI-compatible HTTP front")
    _add_listen_options(api, 8000)
    api.set_defaults(run=_run_api)

    dispatcher = command("dispatcher", "run a dispatcher (job consumer)")
    dispatcher.add_argument("--concurrency", type=int, default=None,
                            help="jobs handled at once (prefetch) (default: MQGATE_CONCURRENCY, "
                            f"{Settings.model_fields['concurrency'].default})")
    _add_config_option(dispatcher, "the API keys written in it")
    dispatcher.set_defaults(run=_run_dispatcher)

    controller = command("controller", "run a FastChat-protocol controller (Redis registry)")
    _add_listen_options(controller, 21001)
    _add_config_option(controller, "their models are listed beside the workers' (SIGHUP "
                       "reads it again)")
    controller.set_defaults(run=_run_controller)

    serve = command("serve", "run the whole stack with the bundled worker in one process "
                    "(in-process queue unless MQGATE_AMQP_URL is set)")
    _add_listen_options(serve, 8000)
    serve.add_argument("--controller-port", type=int, default=21001,
                       help="loopback port of the embedded controller, for external workers")
    serve.add_argument("--worker-port", type=int, default=21002,
                       help="loopback port of the bundled worker")
    serve.add_argument("--startup-timeout", type=float, default=STARTUP_TIMEOUT, metavar="SECONDS",
                       help="seconds to wait, once the models are loaded, for the worker to "
                       "register them with the controller")
    _add_model_options(serve)
    _add_config_option(serve, "their models are served beside the bundled ones (SIGHUP "
                       "reads it again)")
    serve.set_defaults(run=_run_serve)

    worker = command("worker", "run the bundled FastChat-protocol worker")
    _add_listen_options(worker, 21002)
    worker.add_argument("--address", default=None,
                        help="the URL the controller should use (default: http://HOST:PORT)")
    _add_model_options(worker)
    worker.set_defaults(run=_run_worker)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    settings = Settings()
    log_format = settings.log_format
    if args.command == "serve" and "MQGATE_LOG_FORMAT" not in os.environ:
        log_format = "text"  # a person at a terminal; set MQGATE_LOG_FORMAT=json for machines
    configure_logging(settings.log_level, log_format)
    args.run(args, settings)


if __name__ == "__main__":
    main()
