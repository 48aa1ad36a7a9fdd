"""The dispatcher's HTTP connection pools: one aiohttp session per client (the workers', the
upstreams'), made on first use, keeping connections to each host alive between calls."""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

KEEPALIVE_SECONDS = 30.0  # how long an idle connection is kept for the next call


class ConnectionPool:
    """A lazily made aiohttp session with no limit on connections (worker slots and entries'
    limits bound the calls); made again if closed, closed by ``aclose``."""

    def __init__(self, *, headers: Mapping[str, str], connect_timeout: float,
                 read_timeout: float) -> None:
        self._default_headers = dict(headers)
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout  # between two reads, however long the answer runs
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0,
                                             keepalive_timeout=KEEPALIVE_SECONDS,
                                             enable_cleanup_closed=True)
            timeout = aiohttp.ClientTimeout(total=None, connect=self._connect_timeout,
                                            sock_connect=self._connect_timeout,
                                            sock_read=self._read_timeout)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=timeout, headers=self._default_headers,
                auto_decompress=True)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
