"""The API keys of upstream entries, found where the calls are made.

The controller hands out entries without keys. An entry whose key is ``os.environ/NAME`` is
called with the dispatcher's own ``NAME``; one whose key is written in the config file is
called with the key of the same digest in the dispatcher's own copy of the file
(``MQGATE_CONFIG``), read again when a digest is not found there (the file changed). So keys
never travel through Redis or the broker.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping

from contracts.errors import UpstreamConfigError
from contracts.upstream import ENV_PREFIX, ConfigFile, UpstreamEntry, key_digest
from runtime.config_file import ConfigFileError, read_config_file

log = logging.getLogger(__name__)

REREAD_AFTER = 5.0  # seconds between two readings of the file for a digest not found


class UpstreamKeys:
    def __init__(self, path: str, *, environ: Mapping[str, str] | None = None,
                 reread_after: float = REREAD_AFTER) -> None:
        self._path = path
        self._environ = os.environ if environ is None else environ
        self._reread_after = reread_after
        self._written: dict[str, str] = {}
        self._read_at: float | None = None

    def _read(self) -> None:
        self._read_at = time.monotonic()
        if not self._path:
            return
        try:
            data = read_config_file(self._path)
            entries = ConfigFile.model_validate(data).entries() if isinstance(data,
                                                                                dict) else []
        except (ConfigFileError, ValueError) as exc:
            log.warning("the keys in %s are not usable: %s", self._path, exc)
            return
        self._written = {key_digest(k): k for k in (e.litellm_params.api_key for e in entries)
                         if k and not k.startswith(ENV_PREFIX)}

    def _written_key(self, digest: str) -> str | None:
        if digest not in self._written and (
                self._read_at is None
                or time.monotonic() - self._read_at >= self._reread_after):
            self._read()
        return self._written.get(digest)

    def key(self, entry: UpstreamEntry) -> str | None:
        """The key to call ``entry`` with (None: it has none); UpstreamConfigError when it
        has one that this dispatcher cannot find."""
        ref = entry.key
        if ref is None:
            return None
        if ref.env is not None:
            value = self._environ.get(ref.env)
            if value is None:
                raise UpstreamConfigError(
                    f"the upstream of model '{entry.model_name}' at {entry.api_base} takes its "
                    f"key from os.environ/{ref.env}, which this dispatcher's environment does "
                    "not set")
            return value
        if ref.digest is not None:
            value = self._written_key(ref.digest)
            if value is None:
                raise UpstreamConfigError(
                    f"the key of the upstream of model '{entry.model_name}' at "
                    f"{entry.api_base} is written in the controller's config file, and this "
                    "dispatcher has no copy of it: give it the same file (MQGATE_CONFIG), or "
                    "write the key as os.environ/NAME")
            return value
        return None
