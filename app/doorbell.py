"""Wake one idle worker per piece of new work, not all of them.

Each accepted notification (or another replica's NOTIFY) rings once and one idle worker claims it;
waking every worker would send them all to the store to find nothing. A ring while no worker is idle
is kept (up to one per worker) for the next worker that runs out of work: a worker that found the
queue empty a moment before the accept committed looks again at once instead of at the next poll.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Doorbell:
    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._idle: deque[asyncio.Future[None]] = deque()
        self._kept = 0

    @property
    def idle(self) -> int:
        return len(self._idle)

    def ring(self) -> None:
        """Wake one idle worker; with none idle, keep the ring for the next one."""
        while self._idle:
            waiter = self._idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._kept = min(self._kept + 1, self._limit)

    def ring_all(self) -> None:
        while self._idle:
            waiter = self._idle.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self, poll: float) -> None:
        """Until a ring, or `poll` seconds (the poll catches what no ring announced)."""
        if self._kept:
            self._kept -= 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._idle.append(waiter)
        try:
            await asyncio.wait_for(waiter, poll)
        except TimeoutError:
            pass
        finally:
            if waiter in self._idle:  # timed out or cancelled: no longer waiting
                self._idle.remove(waiter)
