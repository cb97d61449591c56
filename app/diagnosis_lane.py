"""The LLM lane: diagnoses run beside the pages, never in front of them.

A page (app/pipeline.py) queues its diagnosis in the store and waits for it only when this lane
can start it at once and the model usually answers before PAGE_WITHIN_SECONDS; otherwise the page
goes out with the rules' preliminary diagnosis and the answer becomes an edit of that message.

LLM_CONCURRENCY lane workers take queued diagnoses most severe first, then oldest. One whose page
was accepted longer than LLM_MAX_QUEUE_SECONDS ago is not sent to the model: the answer is the
rules' diagnosis with that reason, so the preliminary text stays, marked final. A lane worker's
claim has a lease as long as the model's whole deadline; should the process die, another replica
(or this one restarted) takes the diagnosis again when it runs out.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable

from pydantic import BaseModel, TypeAdapter

from app.doorbell import Doorbell
from app.enrich import Enricher
from app.logs import Throttled, log_context
from app.metrics import Metrics
from app.models import AlertmanagerPayload, Diagnosis, DiagnosisSource, MetricContext
from app.store import DiagnosisJob, LeaseLostError, Store, StoreError

log = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 1.0
STORE_ERROR_LOG_SECONDS = 30.0
ANSWER_POLL_SECONDS = 1.0  # a waiting page asks the store when no word of its answer came
LATENCY_WEIGHT = 0.3  # of the latest call in the running estimate of the model's answer time
CONTEXTS = TypeAdapter(list[MetricContext])


def _nothing() -> None:
    pass


class DiagnosisResult(BaseModel):
    """A page's final diagnosis, as the lane stores it and an edit carries it."""

    diagnosis: Diagnosis
    source: DiagnosisSource


class DiagnosisLane:
    def __init__(
        self,
        store: Store,
        enricher: Enricher,
        metrics: Metrics,
        *,
        concurrency: int,
        max_queue_seconds: float,
        lease_seconds: float,
    ) -> None:
        self._store = store
        self._enricher = enricher
        self._metrics = metrics
        self._concurrency = concurrency
        self._max_queue = max_queue_seconds
        self._lease = lease_seconds
        self._owner = f"llm-{uuid.uuid4().hex[:8]}"
        self._doorbell = Doorbell(concurrency)
        self._tasks: list[asyncio.Task[None]] = []
        self._answered: dict[int, asyncio.Event] = {}
        self._running = 0
        self._store_trouble = Throttled(log, STORE_ERROR_LOG_SECONDS)
        # Diagnoses queued and not yet answered, as far as this process knows (its own pages'
        # admissions, its lane's answers); set right whenever the lane finds the queue empty, to
        # what runs plus what pages admitted and are still committing.
        self._backlog = 0
        self._committing = 0
        self._latency: float | None = None
        self.on_edit_queued: Callable[[], None] = _nothing  # the page workers' wake (runtime)

    def wake(self) -> None:
        self._doorbell.ring()

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._loop(i), name=f"llm-{i}") for i in range(self._concurrency)
        ]

    async def stop(self) -> None:
        """Cancel what runs: its claims run out and the diagnoses are taken again."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def admit(self, seconds: float) -> bool:
        """Count a diagnosis a page is about to queue (`queued` once committed, `withdrawn` if
        it never is); whether it should be answered within `seconds`, for the page to wait: the
        diagnoses ahead of it, in rounds of LLM_CONCURRENCY, times the model's recent answer time
        (before the first answer: only when it starts at once). Counted before the page's first
        await, so a burst of pages deciding together sees each other."""
        rounds = self._backlog // self._concurrency + 1
        self._backlog += 1
        self._committing += 1
        if self._latency is None:
            return seconds > 0 and rounds == 1
        return 0 < self._latency * rounds <= seconds

    def queued(self) -> None:
        """An admitted diagnosis is in the store: a lane worker takes it now."""
        self._committing = max(0, self._committing - 1)
        self.wake()

    def withdrawn(self) -> None:
        """An admitted diagnosis was never queued (the page failed first)."""
        self._committing = max(0, self._committing - 1)
        self._backlog = max(0, self._backlog - 1)

    async def wait_for(self, notification_id: int, seconds: float) -> bool:
        """Wait up to `seconds` for the page's diagnosis (queued just before); True if answered.
        The answer's word comes from this lane or another replica's (`answered`); should that word
        be lost (another replica answered while this one's LISTEN was reconnecting), the store is
        asked every ANSWER_POLL_SECONDS, as idle workers poll for work."""
        if seconds <= 0:
            return False
        deadline = time.monotonic() + seconds
        event = self._answered.setdefault(notification_id, asyncio.Event())
        try:
            while (left := deadline - time.monotonic()) > 0:
                try:
                    await asyncio.wait_for(event.wait(), min(left, ANSWER_POLL_SECONDS))
                    return True
                except TimeoutError:
                    if await self._answered_in_store(notification_id):
                        return True
            return False
        finally:
            self._answered.pop(notification_id, None)

    async def _answered_in_store(self, notification_id: int) -> bool:
        try:
            return await self._store.diagnosis_answered(notification_id)
        except StoreError:  # as if no word came; take_diagnosis decides in the end
            return False

    async def _loop(self, index: int) -> None:
        owner = f"{self._owner}-{index}"
        while True:
            try:
                job = await self._store.claim_diagnosis(owner, self._lease)
            except StoreError as exc:
                self._store_trouble.error("cannot claim a diagnosis from the store: %s", exc)
                job = None
            if job is None:  # nothing queued: what is ahead of a new page is what runs
                self._backlog = self._running + self._committing
                await self._doorbell.wait(IDLE_POLL_SECONDS)
                continue
            self._running += 1
            try:
                with log_context(notification_id=job.claim.notification_id, stage="diagnose"):
                    await self._answer(job)
            except (StoreError, LeaseLostError) as exc:  # the lease runs out; taken again
                log.error("diagnosis of notification %s not recorded: %s", job.claim, exc)
            except Exception:  # a bug must not stop the lane; the lease brings the job back
                log.exception("diagnosis of notification %s failed", job.claim.notification_id)
            finally:
                self._running -= 1
                self._backlog = max(0, self._backlog - 1)

    async def _answer(self, job: DiagnosisJob) -> None:
        payload = AlertmanagerPayload.model_validate_json(job.payload)
        if job.age > self._max_queue:
            reason = (
                f"AI diagnosis skipped: queued {job.age:.0f}s,"
                f" past LLM_MAX_QUEUE_SECONDS ({self._max_queue:g}s)"
            )
            self._metrics.llm_dropped.labels(reason="queue_expired").inc()
            self._metrics.fallbacks.labels(reason="queue_expired").inc()
            self._metrics.diagnoses.labels(source="rules").inc()
            log.warning("notification %s: %s", job.claim.notification_id, reason)
            diagnosis, source = self._enricher.rules(
                payload,
                DiagnosisSource(kind="rules", reason=reason),
                CONTEXTS.validate_json(job.context),
            )
            result = DiagnosisResult(diagnosis=diagnosis, source=source)
        else:
            started = time.monotonic()
            contexts = CONTEXTS.validate_json(job.context)
            memory = await self._enricher.memory(payload)
            diagnosis, source = await self._enricher.diagnose(payload, contexts, memory)
            elapsed = time.monotonic() - started
            previous = self._latency if self._latency is not None else elapsed
            self._latency = previous + LATENCY_WEIGHT * (elapsed - previous)
            result = DiagnosisResult(diagnosis=diagnosis, source=source)
        edit_queued = await self._store.answer_diagnosis(job.claim, result.model_dump_json())
        if edit_queued:
            self.on_edit_queued()
        self.answered(job.claim.notification_id)

    def answered(self, notification_id: int) -> None:
        """A diagnosis is answered, by this lane or (the store's NOTIFY) another replica's: the
        page waiting for it here, if any, takes it now."""
        event = self._answered.get(notification_id)
        if event is not None:
            event.set()
