"""Workers: claim stored notifications (pages and diagnosis edits, app/pipeline.py) and run the
pipeline for each; the most severe first (app/priority.py), each group in arrival order.

- A claim holds a fenced lease (app/lease.py) that is renewed while the work runs; if the process
  dies, the lease runs out and another worker (or this service after a restart) claims the
  notification again. A worker whose claim was taken over (it stalled past its lease) is stopped
  and sends nothing more: every message is preceded by a check of the claim.
- Transient failures retry with exponential backoff; after `max_attempts` the notification is marked
  failed and logged loudly.
- `stop()` lets in-flight work finish for a grace period, then cancels it and hands it back unclaimed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from app.doorbell import Doorbell
from app.lease import Lease
from app.logs import Throttled, log_context
from app.metrics import Metrics
from app.pipeline import RetryLaterError
from app.store import LeaseLostError, Store, StoredNotification, StoreError
from app.store.base import ignore_answer

log = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 1.0
PURGE_EVERY_SECONDS = 3600.0
STORE_ERROR_LOG_SECONDS = 30.0


def backoff(attempt: int) -> float:
    """Seconds before retry number `attempt` (1-based): 5, 10, 20 ... capped at 5 minutes."""
    return float(min(300, 5 * 2 ** max(0, attempt - 1)))


class WorkerPool:
    def __init__(
        self,
        store: Store,
        process: Callable[[StoredNotification, Lease], Coroutine[Any, Any, None]],
        metrics: Metrics,
        *,
        count: int,
        lease_seconds: float,
        max_attempts: int,
        retention_seconds: float,
        grace_seconds: float = 10.0,
        also_wake: Callable[[], None] = lambda: None,
        answered: Callable[[int], None] = ignore_answer,
    ) -> None:
        self._store = store
        self._process = process
        self._metrics = metrics
        self._count = count
        self._lease = lease_seconds
        self._max_attempts = max_attempts
        self._retention = retention_seconds
        self._grace = grace_seconds
        self._also_wake = also_wake  # the LLM lane: other replicas' NOTIFY may be its work
        self._answered = answered  # the LLM lane: another replica answered a page's diagnosis
        self._owner = f"worker-{uuid.uuid4().hex[:8]}"
        self._doorbell = Doorbell(count)
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._watcher: asyncio.Task[None] | None = None
        self._last_purge = -math.inf  # the first idle moment purges, even on a host up < 1 h
        self._store_trouble = Throttled(log, STORE_ERROR_LOG_SECONDS)

    @property
    def alive(self) -> int:
        return sum(1 for t in self._tasks if not t.done())

    @property
    def size(self) -> int:
        return self._count

    def wake(self) -> None:
        """Something was accepted: one idle worker looks now instead of at the next poll."""
        self._doorbell.ring()

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._loop(i), name=f"worker-{i}") for i in range(self._count)
        ]
        # Other replicas' commits (PostgreSQL's NOTIFY) wake these workers as the webhook does.
        self._watcher = asyncio.create_task(
            self._store.watch(self._notified, self._answered), name="store-watch"
        )

    def _notified(self) -> None:
        self.wake()
        self._also_wake()

    async def stop(self, grace: float | None = None) -> None:
        """Stop claiming; in-flight work gets `grace` seconds (the pool's own by default), then is
        cancelled and handed back."""
        self._stopping = True
        self._doorbell.ring_all()
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        if not self._tasks:
            return
        timeout = self._grace if grace is None else grace
        _, pending = await asyncio.wait(self._tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _loop(self, index: int) -> None:
        owner = f"{self._owner}-{index}"
        while not self._stopping:
            try:
                stored = await self._store.claim(owner, self._lease)
            except StoreError as exc:
                self._store_trouble.error("cannot claim work from the store: %s", exc)
                stored = None
            if stored is None:
                await self._idle(index)
                continue
            with log_context(notification_id=stored.id, group_key=stored.group_id):
                await self._handle_logged(stored)

    async def _handle_logged(self, stored: StoredNotification) -> None:
        try:
            await self._handle(stored)
        except StoreError as exc:  # the lease runs out and the work is claimed again
            log.error("store failed while finishing notification %s: %s", stored.id, exc)
        except LeaseLostError as exc:
            self._metrics.processed.labels(outcome="lost").inc()
            log.warning(
                "stopped work on notification %s, sending nothing more: %s",
                stored.id,
                exc,
                extra={"outcome": "lost"},
            )

    async def _idle(self, index: int) -> None:
        if index == 0:
            await self._housekeeping()
        if not self._stopping:
            await self._doorbell.wait(IDLE_POLL_SECONDS)

    async def _housekeeping(self) -> None:
        try:
            self._metrics.backlog.set(await self._store.backlog())
            self._metrics.queue_oldest_age.set(await self._store.oldest_backlog_age())
            if time.monotonic() - self._last_purge > PURGE_EVERY_SECONDS:
                self._last_purge = time.monotonic()
                purged = await self._store.purge(self._retention)
                if purged:
                    log.info("purged %d finished notifications past retention", purged)
        except StoreError as exc:
            self._store_trouble.error("store housekeeping failed: %s", exc)

    async def _handle(self, stored: StoredNotification) -> None:
        lease = Lease(self._store, stored.claim, self._lease)
        work = asyncio.create_task(self._process(stored, lease))
        keeper = asyncio.create_task(lease.keep())
        started = time.monotonic()
        try:
            await asyncio.wait({work, keeper}, return_when=asyncio.FIRST_COMPLETED)
            if not work.done():  # the keeper returned: another worker has the notification now
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
                raise LeaseLostError(f"the lease on notification {stored.id} was lost")
            work.result()
        except asyncio.CancelledError:  # stop(): hand the work back, claimable at once
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
            with contextlib.suppress(StoreError, LeaseLostError):
                await self._store.release(stored.claim)
            raise
        except (LeaseLostError, StoreError):
            raise
        except Exception as exc:
            await self._failed(stored, exc)
        else:
            await self._store.finish(stored.claim)
            self._metrics.processed.labels(outcome="done").inc()
            log.info("notification %s processed", stored.id, extra={"outcome": "done"})
        finally:
            keeper.cancel()
            self._metrics.processing_seconds.observe(time.monotonic() - started)

    async def _failed(self, stored: StoredNotification, exc: Exception) -> None:
        reason = str(exc) if isinstance(exc, RetryLaterError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, RetryLaterError):
            log.exception("processing notification %s failed", stored.id)
        if stored.attempts >= self._max_attempts:
            log.error(
                "giving up on notification %s after %d attempts: %s",
                stored.id,
                stored.attempts,
                reason,
                extra={"outcome": "failed"},
            )
            await self._store.give_up(stored.claim, reason)
            self._metrics.processed.labels(outcome="failed").inc()
            return
        delay = backoff(stored.attempts)
        log.warning(
            "notification %s will be retried in %.0fs: %s",
            stored.id,
            delay,
            reason,
            extra={"outcome": "retry"},
        )
        await self._store.retry_later(stored.claim, reason, delay)
        self._metrics.processed.labels(outcome="retry").inc()
