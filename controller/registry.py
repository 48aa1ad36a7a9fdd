"""The worker registry, kept in Redis so that a restarted or replicated controller loses nothing.

Every registration gets an id of its own, kept through heart beats and handed out with the
worker's address: whatever a client cached about a worker (its conversation template, its
context length) under an older id belongs to what ran there before.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from contracts.fastchat import WorkerRegistered, WorkerStatus
from contracts.topology import Topology

DispatchMethod = Literal["shortest_queue", "lottery"]


class WorkerInfo(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model_names: list[str]
    speed: int = 1
    queue_length: int = 0
    check_heart_beat: bool = True
    last_heart_beat: float = 0.0
    multimodal: bool = False
    registration: str = ""  # empty for entries written before registrations had ids


class HashStore(Protocol):
    """The few Redis hash commands the registry needs (redis.asyncio.Redis has them)."""

    async def hset(self, name: str, key: str, value: str | int) -> int: ...

    async def hget(self, name: str, key: str) -> str | None: ...

    async def hgetall(self, name: str) -> dict[str, str]: ...

    async def hdel(self, name: str, *keys: str) -> int: ...

    async def hincrby(self, name: str, key: str, amount: int = 1) -> int: ...

    async def publish(self, channel: str, message: str) -> int: ...


class MemoryHashStore:
    """HashStore in process memory, for ``mqgate serve`` without Redis. ``relay`` hands what
    is published to subscribers in the same process (an in-memory cache's ``publish``)."""

    def __init__(self, relay: Callable[[str, str], Awaitable[None]] | None = None) -> None:
        self._hashes: dict[str, dict[str, str]] = {}
        self._relay = relay

    async def hset(self, name: str, key: str, value: str | int) -> int:
        fresh = key not in self._hashes.setdefault(name, {})
        self._hashes[name][key] = str(value)
        return int(fresh)

    async def hget(self, name: str, key: str) -> str | None:
        return self._hashes.get(name, {}).get(key)

    async def hgetall(self, name: str) -> dict[str, str]:
        return dict(self._hashes.get(name, {}))

    async def hdel(self, name: str, *keys: str) -> int:
        table = self._hashes.get(name, {})
        return sum(table.pop(key, None) is not None for key in keys)

    async def hincrby(self, name: str, key: str, amount: int = 1) -> int:
        table = self._hashes.setdefault(name, {})
        table[key] = str(int(table.get(key, "0")) + amount)
        return int(table[key])

    async def publish(self, channel: str, message: str) -> int:
        if self._relay is None:
            return 0
        await self._relay(channel, message)
        return 1


class Registry:
    """Workers by address, with what they serve, their queue and their last heart beat.
    ``clock`` tells the time in seconds since the epoch (``time.time``)."""

    def __init__(self, redis: HashStore, topology: Topology, *, expiration: float,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = redis
        self._workers = topology.redis_key("controller", "workers")
        self._queues = topology.redis_key("controller", "queue")
        self._registrations = topology.registrations_channel
        self._expiration = expiration
        self._clock = clock

    async def register(self, name: str, status: WorkerStatus, *, check_heart_beat: bool,
                       multimodal: bool) -> WorkerRegistered:
        """Record ``name`` under a new registration id; returns what to announce."""
        before = await self._info(name)
        info = WorkerInfo(model_names=status.model_names, speed=status.speed,
                          queue_length=status.queue_length, check_heart_beat=check_heart_beat,
                          last_heart_beat=self._clock(), multimodal=multimodal,
                          registration=uuid.uuid4().hex)
        await self._store.hset(self._workers, name, info.model_dump_json())
        await self._store.hset(self._queues, name, status.queue_length)
        names = set(info.model_names) | set(before.model_names if before else ())
        return WorkerRegistered(worker_name=name, registration=info.registration,
                                model_names=sorted(names))

    async def announce(self, notice: WorkerRegistered) -> None:
        await self._store.publish(self._registrations, notice.model_dump_json())

    async def _info(self, name: str) -> WorkerInfo | None:
        raw = await self._store.hget(self._workers, name)
        if raw is None:
            return None
        try:
            return WorkerInfo.model_validate_json(raw)
        except ValidationError:
            return None

    async def remove(self, name: str) -> None:
        await self._store.hdel(self._workers, name)
        await self._store.hdel(self._queues, name)

    async def heart_beat(self, name: str, queue_length: int) -> bool:
        raw = await self._store.hget(self._workers, name)
        if raw is None:
            return False
        info = WorkerInfo.model_validate_json(raw)
        info.last_heart_beat = self._clock()
        info.queue_length = queue_length
        await self._store.hset(self._workers, name, info.model_dump_json())
        await self._store.hset(self._queues, name, queue_length)
        return True

    def _alive(self, info: WorkerInfo, now: float) -> bool:
        return not info.check_heart_beat or now - info.last_heart_beat <= self._expiration

    async def workers(self, *, include_expired: bool = False) -> dict[str, WorkerInfo]:
        raw = await self._store.hgetall(self._workers)
        queues = await self._store.hgetall(self._queues)
        now = self._clock()
        found: dict[str, WorkerInfo] = {}
        for key, value in raw.items():
            name = str(key)
            try:
                info = WorkerInfo.model_validate_json(value)
            except ValidationError:
                continue
            info.queue_length = int(queues.get(name, info.queue_length))
            if include_expired or self._alive(info, now):
                found[name] = info
        return found

    async def remove_expired(self) -> list[str]:
        now = self._clock()
        expired = [name for name, info in (await self.workers(include_expired=True)).items()
                   if not self._alive(info, now)]
        for name in expired:
            await self.remove(name)
        return expired

    async def models(self, *, multimodal: bool | None = None) -> list[str]:
        names: set[str] = set()
        for info in (await self.workers()).values():
            if multimodal is None or info.multimodal == multimodal:
                names.update(info.model_names)
        return sorted(names)

    async def addresses(self, model: str) -> dict[str, str]:
        """The live workers of ``model``, each with its registration id, in address order."""
        return {name: info.registration
                for name, info in sorted((await self.workers()).items())
                if model in info.model_names}

    async def choose(self, model: str, method: DispatchMethod) -> str:
        """FastChat's dispatch: a speed-weighted lottery, or the shortest queue (then count it)."""
        candidates = {name: info for name, info in (await self.workers()).items()
                      if model in info.model_names and info.speed > 0}
        if not candidates:
            return ""
        if method == "lottery":
            names = list(candidates)
            return random.choices(names, weights=[candidates[n].speed for n in names])[0]
        name = min(candidates, key=lambda n: candidates[n].queue_length / candidates[n].speed)
        await self._store.hincrby(self._queues, name, 1)
        return name
