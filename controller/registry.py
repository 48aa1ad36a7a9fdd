"""The worker registry, kept in Redis so that a restarted or replicated controller loses nothing."""

from __future__ import annotations

import random
import time
from typing import Literal

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, ValidationError

from contracts.fastchat import WorkerStatus
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


class Registry:
    def __init__(self, redis: aioredis.Redis, topology: Topology, *, expiration: float) -> None:
        self._redis = redis
        self._workers = topology.redis_key("controller", "workers")
        self._queues = topology.redis_key("controller", "queue")
        self._expiration = expiration

    async def register(self, name: str, status: WorkerStatus, *, check_heart_beat: bool,
                       multimodal: bool) -> None:
        info = WorkerInfo(model_names=status.model_names, speed=status.speed,
                          queue_length=status.queue_length, check_heart_beat=check_heart_beat,
                          last_heart_beat=time.time(), multimodal=multimodal)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._workers, name, info.model_dump_json())
            pipe.hset(self._queues, name, status.queue_length)
            await pipe.execute()

    async def remove(self, name: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self._workers, name)
            pipe.hdel(self._queues, name)
            await pipe.execute()

    async def heart_beat(self, name: str, queue_length: int) -> bool:
        raw = await self._redis.hget(self._workers, name)
        if raw is None:
            return False
        info = WorkerInfo.model_validate_json(raw)
        info.last_heart_beat = time.time()
        info.queue_length = queue_length
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._workers, name, info.model_dump_json())
            pipe.hset(self._queues, name, queue_length)
            await pipe.execute()
        return True

    def _alive(self, info: WorkerInfo, now: float) -> bool:
        return not info.check_heart_beat or now - info.last_heart_beat <= self._expiration

    async def workers(self, *, include_expired: bool = False) -> dict[str, WorkerInfo]:
        raw = await self._redis.hgetall(self._workers)
        queues = await self._redis.hgetall(self._queues)
        now = time.time()
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
        now = time.time()
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

    async def addresses(self, model: str) -> list[str]:
        return sorted(name for name, info in (await self.workers()).items()
                      if model in info.model_names)

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
        await self._redis.hincrby(self._queues, name, 1)
        return name
