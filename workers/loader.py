"""The bundled worker built from command-line options: model files checked, then loaded."""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.files import ModelFileError
from workers.gguf import read_header

if TYPE_CHECKING:  # the local extra's modules load only when a model is served
    from workers.chat import ChatModel

CHAT_MODEL = "smollm2-135m-instruct"
EMBEDDING_MODEL = "all-minilm-l6-v2"


@dataclass(frozen=True, kw_only=True)
class WorkerOptions:
    model_path: Path | None = None
    chat_name: str | None = None
    conv_template: str | None = None
    context_length: int | None = None  # None: the GGUF's own, up to MAX_DEFAULT_CONTEXT
    threads: int | None = None
    embeddings: bool = True


def _chat_model(path: Path, options: WorkerOptions) -> ChatModel:
    """The loaded chat model; ModelFileError when ``path`` is not a GGUF llama.cpp loads."""
    header = read_header(path)  # a clear error for a missing or foreign file, before llama.cpp
    from workers.chat import ChatModel

    n_ctx = options.context_length or header.default_context()
    try:
        return ChatModel(path, n_ctx=n_ctx, threads=options.threads,
                         template_override=options.conv_template)
    except ValueError as exc:  # how llama-cpp-python reports a model or context it cannot make
        if "context" in str(exc):
            raise ModelFileError(f"llama.cpp could not allocate {n_ctx} tokens of context for "
                                 f"{path}; a smaller --context-length needs less memory") from exc
        raise ModelFileError(
            f"llama.cpp could not load {path} (architecture "
            f"{header.architecture or 'not stated'}): the file is cut short or corrupt, or "
            f"llama-cpp-python {importlib.metadata.version('llama-cpp-python')} does not "
            "support that architecture") from exc


def build_worker_app(options: WorkerOptions, *, address: str,
                     controller_url: str | None) -> tuple[Any, list[str]]:
    """The bundled worker app and its model names, with the models loaded. Raises
    ModelFileError for a model that does not load, ImportError without the local extra."""
    from workers.files import MINILM, SMOLLM2

    if options.model_path is None:
        path, name = SMOLLM2.verified(), options.chat_name or CHAT_MODEL
    else:
        path, name = options.model_path, options.chat_name or options.model_path.stem.lower()
    chat = _chat_model(path, options)
    from workers.app import WorkerConfig, create_worker_app
    from workers.embeddings import Embedder

    embedder = Embedder(MINILM.verified()) if options.embeddings else None
    config = WorkerConfig(address=address, controller_url=controller_url, chat_name=name,
                          embedding_name=EMBEDDING_MODEL if embedder else None, chat=chat,
                          embedder=embedder)
    return create_worker_app(config), config.model_names
