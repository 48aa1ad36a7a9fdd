"""Which worker addresses a dispatcher may call (no SSRF through a controller or a cache).

Entries are ``host``, ``host:port``, ``*.domain``, ``*.domain:port``, a CIDR such as
``10.0.0.0/8`` (optionally ``:port`` after it in brackets: ``[10.0.0.0/8]:21002``), or ``*``.
Only http and https addresses with a host are ever allowed.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class _Rule:
    host: str  # "*", "*.suffix", an exact name, or a network in CIDR form
    port: int | None

    def matches(self, host: str, port: int) -> bool:
        if self.port is not None and port != self.port:
            return False
        if self.host == "*":
            return True
        if self.host.startswith("*."):
            return host.endswith(self.host[1:])
        if "/" in self.host:
            try:
                return ipaddress.ip_address(host) in ipaddress.ip_network(self.host,
                                                                          strict=False)
            except ValueError:
                return False
        return host == self.host


def _parse(entry: str) -> _Rule:
    entry = entry.strip().lower()
    if entry.startswith("["):
        network, _, rest = entry[1:].partition("]")
        return _Rule(network, int(rest[1:]) if rest.startswith(":") else None)
    if "/" not in entry and entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return _Rule(host, int(port))
    return _Rule(entry, None)


_REMEMBERED = 4096  # verdicts kept; a fleet has far fewer worker addresses


class WorkerAllowlist:
    def __init__(self, entries: list[str]) -> None:
        self._rules = [_parse(e) for e in entries if e.strip()] or [_Rule("*", None)]
        self._verdicts: dict[str, bool] = {}

    def allows(self, address: str) -> bool:
        """Whether ``address`` may be called; decided once per address (it is asked on
        every job)."""
        verdict = self._verdicts.get(address)
        if verdict is None:
            if len(self._verdicts) >= _REMEMBERED:
                self._verdicts.clear()
            verdict = self._verdicts[address] = self._decide(address)
        return verdict

    def _decide(self, address: str) -> bool:
        try:
            parts = urlsplit(address)
            port = parts.port
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        if parts.username or parts.password or parts.query or parts.fragment:
            return False
        effective = port if port is not None else (443 if parts.scheme == "https" else 80)
        host = parts.hostname.lower()
        return any(rule.matches(host, effective) for rule in self._rules)
