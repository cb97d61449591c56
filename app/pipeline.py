"""One stored notification through enrichment and delivery: a page, or the edit that gives a
preliminary page its final diagnosis.

Page first (PAGE_WITHIN_SECONDS): a new or escalating page queues its LLM diagnosis in the LLM
lane (app/diagnosis_lane.py) and waits for it only while the lane can answer in time. Past that,
the page goes out with the rules' diagnosis marked preliminary, and the lane's answer comes back as
an `edit` notification queued in the page's group, after the page. Group order is what keeps an
edit from turning a resolved message back into a firing one: a resolve accepted first is
processed first, and the edit then finds the incident closed and changes nothing.

The diagnosis is saved before any delivery, so a retry or a recovered crash re-sends only to the
channels that did not get the message, without a second LLM call.
"""

from __future__ import annotations

import logging
import time

from app.delivery import Dispatcher
from app.diagnosis_lane import CONTEXTS, DiagnosisLane, DiagnosisResult
from app.enrich import Enricher
from app.incident import transition
from app.lease import Lease
from app.logs import log_context
from app.memory import Memory
from app.metrics import Metrics
from app.models import (
    AlertmanagerPayload,
    Diagnosis,
    DiagnosisSource,
    EnrichedNotification,
    Kind,
    MetricContext,
)
from app.priority import rank
from app.store import QueuedDiagnosis, Store, StoredNotification

log = logging.getLogger(__name__)

# Of PAGE_WITHIN_SECONDS, what the sending itself may need: a page stops waiting for the model
# this long before its promise, so that it is on the channels, not just leaving, in time.
SEND_MARGIN_SECONDS = 0.5
# An edit holds its group's later notifications while it waits to be retried, and it only
# improves a message already sent: one retry (after 5 s), then the message stays as it is.
EDIT_MAX_ATTEMPTS = 2


class RetryLaterError(Exception):
    """Processing should be tried again later (a channel failed transiently)."""


class Pipeline:
    def __init__(
        self,
        store: Store,
        enricher: Enricher,
        dispatcher: Dispatcher,
        metrics: Metrics,
        *,
        lane: DiagnosisLane | None = None,
        page_within_seconds: float = 3.0,
    ) -> None:
        self._store = store
        self._enricher = enricher
        self._dispatcher = dispatcher
        self._metrics = metrics
        self._lane = lane
        self._page_within = page_within_seconds

    async def run(self, stored: StoredNotification, lease: Lease) -> None:
        if stored.kind == "edit":
            with log_context(stage="edit"):
                await self._edit(stored, lease)
        else:
            await self._page(stored, lease)

    async def _page(self, stored: StoredNotification, lease: Lease) -> None:
        accepted = time.monotonic() - stored.age
        if stored.enrichment:
            notification = EnrichedNotification.model_validate_json(stored.enrichment)
            incident_id = stored.incident_id
        else:
            with log_context(stage="enrich"):
                notification, incident_id = await self._enrich(stored, lease, accepted)
        notification = notification.model_copy(update={"incident_id": incident_id})
        with log_context(stage="deliver"):
            report = await self._dispatcher.deliver(notification, lease, accepted=accepted)
        if report.retryable:
            raise RetryLaterError(_reasons(report.retryable))

    async def _enrich(
        self, stored: StoredNotification, lease: Lease, accepted: float
    ) -> tuple[EnrichedNotification, int | None]:
        """Context, diagnosis and message, saved with the incident's step; the incident's id."""
        payload = AlertmanagerPayload.model_validate_json(stored.payload)
        incident = await self._store.open_incident(payload.group_id)
        change = transition(payload, incident)
        known = incident.firing if incident else None  # to mark the alerts that are new
        contexts = await self._enricher.contexts(payload, change.kind)
        memory = None
        if change.kind in ("new", "escalation"):
            memory = await self._enricher.memory(payload)
        (diagnosis, source), owed = await self._diagnosis(
            stored, lease, payload, change.kind, contexts, memory=memory, accepted=accepted
        )
        try:
            notification = self._enricher.assemble(
                payload,
                change.kind,
                contexts,
                diagnosis,
                source,
                notification_id=stored.id,
                known=known,
                memory=memory,
            )
            incident_id = await self._store.save_enrichment(
                lease.claim, notification.model_dump_json(), change, owed
            )
        except BaseException:
            if owed is not None and self._lane is not None:
                self._lane.withdrawn()
            raise
        if owed is not None and self._lane is not None:
            self._lane.queued()
        return notification, incident_id

    async def _diagnosis(
        self,
        stored: StoredNotification,
        lease: Lease,
        payload: AlertmanagerPayload,
        kind: Kind,
        contexts: list[MetricContext],
        *,
        memory: Memory | None,
        accepted: float,
    ) -> tuple[tuple[Diagnosis | None, DiagnosisSource], QueuedDiagnosis | None]:
        """The final diagnosis when the lane answers in time, else the rules' preliminary one;
        and the LLM diagnosis still to queue with the page's enrichment, owed as an edit.

        The page waits only when the lane should answer before the promise. When it will not,
        the page skips queueing and asking separately (two transactions fewer in a storm, when
        every page counts): its diagnosis is queued, owed, with the page's enrichment."""
        if kind not in ("new", "escalation"):
            return (None, DiagnosisSource(kind="none")), None
        if self._lane is None:  # no model configured: the rules answer at once, and finally
            return await self._enricher.diagnose(payload, contexts, memory), None
        queued = QueuedDiagnosis(CONTEXTS.dump_json(contexts).decode(), rank(payload))
        promise = self._page_within - min(SEND_MARGIN_SECONDS, self._page_within / 4)
        remaining = accepted + promise - time.monotonic()
        if self._lane.admit(remaining):
            try:
                await self._store.queue_diagnosis(lease.claim, queued.context, queued.rank)
            except BaseException:
                self._lane.withdrawn()
                raise
            self._lane.queued()
            await self._lane.wait_for(stored.id, remaining)
            answer = await self._store.take_diagnosis(lease.claim)
            if answer is not None:
                result = DiagnosisResult.model_validate_json(answer)
                return (result.diagnosis, result.source), None
            owed = None  # take_diagnosis left it owed as an edit
        else:  # no wait: queued with the page's enrichment, one transaction fewer
            owed = queued
        log.info("notification %s: paging now, AI diagnosis to follow as an edit", stored.id)
        preliminary = DiagnosisSource(kind="rules", preliminary=True)
        return self._enricher.rules(payload, preliminary, contexts), owed

    async def _edit(self, stored: StoredNotification, lease: Lease) -> None:
        """Show the page's final diagnosis in its messages, unless its incident has resolved."""
        target_id = stored.target_id
        target = await self._store.edit_target(target_id) if target_id is not None else None
        if target_id is None or target is None or target.enrichment is None:
            log.warning("edit %s: its page is gone (purged), nothing to edit", stored.id)
            return
        if not target.incident_open:
            for channel, delivery in (await self._store.deliveries(target_id)).items():
                if delivery.status == "sent":
                    self._metrics.diagnosis_edits.labels(
                        channel=channel, outcome="superseded"
                    ).inc()
            log.info("edit %s: the incident resolved first, its messages stay", stored.id)
            return
        result = DiagnosisResult.model_validate_json(stored.payload)
        page = EnrichedNotification.model_validate_json(target.enrichment)
        final = page.model_copy(update={"diagnosis": result.diagnosis, "source": result.source})
        await self._store.revise(lease.claim, target_id, final.model_dump_json())
        report = await self._dispatcher.edit(final, target_id, lease)
        if report.retryable and stored.attempts < EDIT_MAX_ATTEMPTS:
            raise RetryLaterError(_reasons(report.retryable))
        if report.retryable:
            log.warning(
                "edit %s: giving up after %d attempts, the message keeps its preliminary text: %s",
                stored.id,
                stored.attempts,
                _reasons(report.retryable),
            )


def _reasons(failures: dict[str, str]) -> str:
    return "; ".join(f"{k}: {v}" for k, v in sorted(failures.items()))
