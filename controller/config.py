"""The upstream entries of the config file (``--config FILE`` or ``MQGATE_CONFIG``): LiteLLM's
``model_list``, read at start and again on SIGHUP.

An entry's ``api_base`` may be ``os.environ/NAME`` (read here); its ``api_key`` never leaves
this process as a key: entries carry a reference to it (see ``contracts.upstream.KeyRef``).
A reload that fails keeps the entries that were served, and says why in the log.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from contracts.upstream import (
    DEFAULT_API_BASE,
    ENV_PREFIX,
    ConfigError,
    ConfigFile,
    KeyRef,
    ModelListEntry,
    UpstreamEntry,
)
from runtime.config_file import ConfigFileError, read_config_file

log = logging.getLogger(__name__)

# where LiteLLM looks when an entry gives no api_base
_BASE_VARIABLES = {"openai": ("OPENAI_BASE_URL", "OPENAI_API_BASE"),
                   "hosted_vllm": ("HOSTED_VLLM_API_BASE",)}


def _api_base(entry: ModelListEntry, where: str, environ: Mapping[str, str]) -> str:
    params = entry.litellm_params
    provider = params.model.partition("/")[0]
    base = params.api_base or params.base_url
    if base is None:
        base = next((environ[v] for v in _BASE_VARIABLES[provider] if environ.get(v)), None)
        if base is None and provider == "openai":
            base = DEFAULT_API_BASE
    elif base.startswith(ENV_PREFIX):
        name = base.removeprefix(ENV_PREFIX)
        base = environ.get(name)
        if not base:
            raise ConfigError(f"{where}: api_base is os.environ/{name}, which is not set")
    if not base:
        raise ConfigError(f"{where}: no api_base")
    if not base.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: api_base {base!r} is not an http or https URL")
    return base.rstrip("/")


def _entry(entry: ModelListEntry, where: str, occurrence: int,
           environ: Mapping[str, str]) -> UpstreamEntry:
    params = entry.litellm_params
    base = _api_base(entry, where, environ)
    served = params.model.partition("/")[2]
    headers = dict(params.extra_headers or {})
    if params.organization:
        headers.setdefault("OpenAI-Organization", params.organization)
    identity = f"{entry.model_name}\0{base}\0{served}\0{occurrence}"
    return UpstreamEntry(
        id=hashlib.sha256(identity.encode()).hexdigest()[:16], model_name=entry.model_name,
        api_base=base, model=served, key=KeyRef.of(params.api_key), rpm=params.rpm,
        tpm=params.tpm, weight=params.weight,
        max_parallel_requests=params.max_parallel_requests,
        timeout=params.stream_timeout or params.timeout,
        context_length=entry.model_info.max_input_tokens if entry.model_info else None,
        headers=headers, defaults=params.defaults())


@dataclass(frozen=True)
class UpstreamTable:
    """The entries by model name, in the file's order."""

    by_model: dict[str, tuple[UpstreamEntry, ...]] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: object, *, environ: Mapping[str, str] | None = None) -> UpstreamTable:
        if not isinstance(data, dict):
            raise ConfigError("the file must hold a mapping with a model_list")
        environ = os.environ if environ is None else environ
        try:
            parsed = ConfigFile.model_validate(data)
        except ValueError as exc:
            raise ConfigError(f"model_list must be a list: {exc}") from None
        seen: Counter[tuple[str, str]] = Counter()
        by_model: dict[str, list[UpstreamEntry]] = {}
        for position, entry in enumerate(parsed.entries()):
            where = f"model_list[{position}] ({entry.model_name!r})"
            key = (entry.model_name, entry.litellm_params.model)
            seen[key] += 1
            by_model.setdefault(entry.model_name, []).append(
                _entry(entry, where, seen[key], environ))
        return cls({model: tuple(entries) for model, entries in by_model.items()})

    def models(self) -> list[str]:
        return sorted(self.by_model)

    def of(self, model: str) -> list[UpstreamEntry]:
        return list(self.by_model.get(model, ()))


def load_upstreams(path: str) -> UpstreamTable:
    """The file's entries; ConfigFileError or ConfigError saying what is wrong."""
    try:
        return UpstreamTable.parse(read_config_file(path))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


class UpstreamConfig:
    """The entries served now, from ``path``; ``reload`` reads the file again."""

    def __init__(self, path: str, table: UpstreamTable | None = None) -> None:
        self.path = path
        self.table = table if table is not None else load_upstreams(path)

    def reload(self) -> set[str] | None:
        """Read the file again: the models whose entries changed, or None when the file is
        not usable (the entries served stay as they were)."""
        try:
            table = load_upstreams(self.path)
        except (ConfigError, ConfigFileError) as exc:
            log.warning("config not reloaded, the previous entries stay: %s", exc)
            return None
        old, self.table = self.table, table
        changed = {m for m in old.by_model.keys() | table.by_model.keys()
                   if old.by_model.get(m) != table.by_model.get(m)}
        log.info("config reloaded from %s: %d models from upstreams, %d changed",
                 self.path, len(table.by_model), len(changed))
        return changed
