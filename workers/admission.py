"""The worker's generation slots: at most so many generations run, the rest wait in turn.

Like FastChat's workers, a request waits here before its response starts, and the worker's
queue length (what it reports to the controller) counts those running and those waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Slot:
    """One generation slot, freed exactly once: by whoever holds it, or, once it is handed
    over, by the generation that took it."""

    def __init__(self, free: Callable[[], None]) -> None:
        self._free: Callable[[], None] | None = free
        self._handed_over = False

    def release(self) -> None:
        free, self._free = self._free, None
        if free is not None:
            free()

    def hand_over(self) -> Callable[[], None]:
        """From now on only the returned callable frees the slot."""
        self._handed_over = True
        return self.release

    def release_unless_handed_over(self) -> None:
        if not self._handed_over:
            self.release()


class Admission:
    def __init__(self, limit: int) -> None:
        self._semaphore = asyncio.Semaphore(limit)
        self._waiting = 0
        self._running = 0

    @property
    def queue_length(self) -> int:
        """Generations running and waiting, as FastChat's workers count them."""
        return self._running + self._waiting

    async def admit(self) -> Slot:
        """A slot, once one is free; a caller cancelled while it waits takes none."""
        self._waiting += 1
        try:
            await self._semaphore.acquire()
        finally:
            self._waiting -= 1
        self._running += 1
        return Slot(self._free)

    def _free(self) -> None:
        self._running -= 1
        self._semaphore.release()
