"""Names of every exchange, queue and Redis key, derived from the namespace."""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True, kw_only=True)
class Topology:
    namespace: str

    @property
    def jobs_queue(self) -> str:
        return f"{self.namespace}.jobs"

    def lane(self, model: str) -> str:
        """The queue of ``model``'s jobs: readable, and unique by a digest of the exact name
        (queue names are at most 255 bytes; model names are anything)."""
        digest = hashlib.sha256(model.encode()).hexdigest()[:10]
        return f"{self.namespace}.lane.{_UNSAFE.sub('_', model)[:80]}.{digest}"

    @property
    def jobs_exchange(self) -> str:
        """Direct exchange that jobs are published to, bound to each model's lane by the
        lane's name."""
        return f"{self.namespace}.jobs"

    @property
    def reply_exchange(self) -> str:
        """Direct exchange that replies are published to, bound to each reply queue by its
        name: with it and the jobs exchange, nothing is published to the default exchange, so
        a user with rights on ``^<namespace>\\.`` only can run every process."""
        return f"{self.namespace}.replies"

    @property
    def cancel_exchange(self) -> str:
        return f"{self.namespace}.cancel"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.namespace}.dlx"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.namespace}.jobs.dead"

    def reply_queue(self) -> str:
        """A fresh name for one api process's reply queue."""
        return f"{self.namespace}.reply.{uuid.uuid4().hex}"

    def cancel_queue(self) -> str:
        return f"{self.namespace}.cancel.{uuid.uuid4().hex}"

    def redis_key(self, *parts: str) -> str:
        return ":".join((self.namespace, *parts))

    def taken_key(self, model: str) -> str:
        """The shared cache's count of jobs dispatchers took from ``model``'s lane."""
        return self.redis_key("taken", self.lane(model))

    def cancel_key(self, job_id: str) -> str:
        """The shared cache's mark of a cancelled job, for dispatchers that take it later."""
        return self.redis_key("cancelled", job_id)

    @property
    def registrations_channel(self) -> str:
        """Redis channel on which the controller announces each worker registration."""
        return self.redis_key("controller", "registrations")

    def slots_key(self, address: str) -> str:
        """The leases on a worker's slots: holder ids scored by when each lease ends."""
        return self.redis_key("slots", address)

    @property
    def slots_freed_channel(self) -> str:
        """Redis channel on which dispatchers announce a worker slot they gave back."""
        return self.redis_key("slots", "freed")


# the AMQP ``type`` of a message that carries a ReplyBatch
REPLY_BATCH_TYPE = "mqgate.reply-batch"

# A job's AMQP header naming the exchange its replies go to; an api that does not set it
# (an older release) gets its replies through the default exchange.
REPLY_EXCHANGE_HEADER = "mqgate-reply-exchange"
