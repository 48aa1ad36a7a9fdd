"""Where worker slots are counted: Redis for a fleet of dispatchers, memory for one process.

A slot is a lease: a holder id in the set of the worker's address, scored by when the lease
ends. Taking a slot first drops the leases that ended, so a dispatcher that dies gives its
slots back one lease later. In Redis every step is one script, timed by Redis's own clock, so
dispatchers' clocks never matter; the keys expire by themselves once no lease is left.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from contracts.topology import Topology

log = logging.getLogger(__name__)


class SlotStoreError(Exception):
    """The store did not answer: nothing is known about the slots."""


class SlotStore(Protocol):
    async def acquire(self, addresses: Sequence[str], holder: str, limit: int,
                      ttl: float) -> str | None:
        """Give ``holder`` a slot for ``ttl`` seconds on the least busy of ``addresses`` with
        fewer than ``limit`` leases (the earliest in ``addresses`` among equals); None when
        every one is full."""
        ...

    async def renew(self, address: str, holder: str, ttl: float) -> bool:
        """Extend ``holder``'s lease on ``address`` to ``ttl`` seconds from now. A lease that
        had ended is taken again, whatever the limit (the call it counts still runs), and the
        answer is False."""
        ...

    async def release(self, address: str, holder: str) -> None: ...

    async def held(self, address: str) -> int:
        """Leases on ``address`` that have not ended."""
        ...


class MemorySlotStore:
    """The slots of one process's dispatcher (``mqgate serve``), with the same semantics."""

    def __init__(self) -> None:
        self._leases: dict[str, dict[str, float]] = {}

    def _live(self, address: str) -> dict[str, float]:
        now = time.monotonic()
        leases = {h: end for h, end in self._leases.get(address, {}).items() if end > now}
        if leases:
            self._leases[address] = leases
        else:
            self._leases.pop(address, None)
        return leases

    async def acquire(self, addresses: Sequence[str], holder: str, limit: int,
                      ttl: float) -> str | None:
        counts = {a: len(self._live(a)) for a in addresses}
        free = [a for a in addresses if counts[a] < limit]
        if not free:
            return None
        address = min(free, key=counts.__getitem__)
        self._leases.setdefault(address, {})[holder] = time.monotonic() + ttl
        return address

    async def renew(self, address: str, holder: str, ttl: float) -> bool:
        held = holder in self._live(address)
        self._leases.setdefault(address, {})[holder] = time.monotonic() + ttl
        return held

    async def release(self, address: str, holder: str) -> None:
        leases = self._leases.get(address, {})
        leases.pop(holder, None)
        if not leases:
            self._leases.pop(address, None)

    async def held(self, address: str) -> int:
        return len(self._live(address))


_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""
# keys live while their longest lease does
_KEEP = """
local function keep(key, ttl)
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
"""
# KEYS: the candidates' slot sets in order; ARGV: holder, limit, ttl in ms.
# The 1-based index of the key where the slot was taken, or 0.
_ACQUIRE = _NOW + _KEEP + """
local limit, ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
local best, fewest = 0, limit
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local held = redis.call('ZCARD', key)
  if held < fewest then best, fewest = i, held end
end
if best > 0 then
  redis.call('ZADD', KEYS[best], now + ttl, ARGV[1])
  keep(KEYS[best], ttl)
end
return best
"""
# KEYS[1]: the slot set; ARGV: holder, ttl in ms. 1 when the lease was still held, else 0.
_RENEW = _NOW + _KEEP + """
local ttl = tonumber(ARGV[2])
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
keep(KEYS[1], ttl)
if score and tonumber(score) > now then return 1 end
return 0
"""
# KEYS[1]: the slot set. The leases that have not ended.
_HELD = _NOW + "return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')"


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisSlotStore:
    """Slots shared by every dispatcher: a sorted set per worker address. A failure costs one
    short timeout (the client's), after which Redis is skipped for ``backoff`` seconds; every
    call then raises SlotStoreError at once. Nothing is retried: the caller decides."""

    def __init__(self, client: aioredis.Redis, topology: Topology, *,
                 backoff: float = 1.0) -> None:
        self._redis = client
        self._topology = topology
        self._backoff = backoff
        self._skip_until = 0.0
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._held = client.register_script(_HELD)

    def _check(self) -> None:
        if time.monotonic() < self._skip_until:
            raise SlotStoreError("redis skipped after a failure")

    def _failed(self, op: str, exc: Exception) -> SlotStoreError:
        self._skip_until = time.monotonic() + self._backoff
        log.debug("redis slot %s failed: %s", op, type(exc).__name__)
        return SlotStoreError(f"redis slot {op} failed: {type(exc).__name__}")

    async def acquire(self, addresses: Sequence[str], holder: str, limit: int,
                      ttl: float) -> str | None:
        if not addresses:
            return None
        self._check()
        keys = [self._topology.slots_key(a) for a in addresses]
        try:
            index = int(await self._acquire(keys=keys, args=[holder, limit, _ms(ttl)]))
        except (RedisError, OSError, TimeoutError) as exc:
            raise self._failed("acquire", exc) from exc
        return addresses[index - 1] if index > 0 else None

    async def renew(self, address: str, holder: str, ttl: float) -> bool:
        self._check()
        try:
            held = await self._renew(keys=[self._topology.slots_key(address)],
                                     args=[holder, _ms(ttl)])
        except (RedisError, OSError, TimeoutError) as exc:
            raise self._failed("renew", exc) from exc
        return bool(int(held))

    async def release(self, address: str, holder: str) -> None:
        self._check()
        try:
            await self._redis.zrem(self._topology.slots_key(address), holder)
        except (RedisError, OSError, TimeoutError) as exc:
            raise self._failed("release", exc) from exc

    async def held(self, address: str) -> int:
        self._check()
        try:
            return int(await self._held(keys=[self._topology.slots_key(address)]))
        except (RedisError, OSError, TimeoutError) as exc:
            raise self._failed("count", exc) from exc

    async def aclose(self) -> None:
        await self._redis.aclose()
