"""Fan-out of one enriched notification to every channel, recorded per channel.

Channels are sent concurrently and independently: one slow or broken channel never holds back another.
A channel that already got this notification (a retry, or work picked up after a crash) is skipped,
and a channel that got part of it (Telegram parts, Slack's reply before its update) continues where it
stopped. Follow-ups (escalation, repeat, resolved) go into the thread of the incident's first message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

from app.lease import Lease
from app.metrics import Metrics
from app.models import EnrichedNotification
from app.notifiers.base import Notifier, NotifyError, Progress, Sent, Thread
from app.priority import SEVERITY_RANK
from app.routing import Matcher, routed
from app.store import Delivery, LeaseLostError, Store, StoreError

log = logging.getLogger(__name__)


@dataclass
class DeliveryReport:
    sent: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    retryable: dict[str, str] = field(default_factory=dict)
    permanent: dict[str, str] = field(default_factory=dict)


class Dispatcher:
    def __init__(
        self,
        notifiers: list[Notifier],
        store: Store,
        metrics: Metrics,
        routes: dict[str, tuple[Matcher, ...]] | None = None,
    ) -> None:
        self.notifiers = notifiers
        self._store = store
        self._metrics = metrics
        self._routes = routes or {}

    @property
    def channels(self) -> list[str]:
        return [n.name for n in self.notifiers]

    async def deliver(
        self,
        notification: EnrichedNotification,
        lease: Lease | None = None,
        *,
        accepted: float | None = None,
    ) -> DeliveryReport:
        """Send to every channel; with a lease, record each step and skip what already went out.

        Every channel settles (sent, failed, or its store write failed) before the outcome is
        decided: no send is left running behind an error to be repeated by the retry. A lost claim
        wins over everything else, then a store error; both propagate to the worker. `accepted`
        (monotonic time of acceptance) times a page's first message on each channel.
        """
        done: dict[str, Delivery] = {}
        if lease is not None:
            done = await self._store.deliveries(lease.claim.notification_id)
        report = DeliveryReport()
        await _settle(
            self._one(
                notifier, notification, done.get(notifier.name), lease, report, accepted=accepted
            )
            for notifier in self.notifiers
        )
        return report

    async def edit(
        self, notification: EnrichedNotification, page_id: int, lease: Lease
    ) -> DeliveryReport:
        """Show `notification`, the page `page_id` with its final diagnosis, in place of the
        message each channel got; recorded per channel on the edit's own claim."""
        sent = await self._store.deliveries(page_id)
        done = await self._store.deliveries(lease.claim.notification_id)
        report = DeliveryReport()
        await _settle(
            self._edit_one(
                notifier,
                notification,
                sent[notifier.name],
                done.get(notifier.name),
                lease=lease,
                report=report,
            )
            for notifier in self.notifiers
            if notifier.name in sent and sent[notifier.name].status == "sent"
        )
        return report

    async def _edit_one(
        self,
        notifier: Notifier,
        notification: EnrichedNotification,
        page: Delivery,
        previous: Delivery | None,
        *,
        lease: Lease,
        report: DeliveryReport,
    ) -> None:
        name = notifier.name
        if previous is not None and previous.status in ("sent", "failed"):
            report.skipped.append(name)
            return
        progress = self._progress(name, previous, lease)
        sent, ref = await self._attempt(
            name,
            notification,
            lease,
            report,
            lambda: notifier.edit(notification, Sent(page.ref, page.steps), progress),
        )
        if not sent:
            self._metrics.diagnosis_edits.labels(channel=name, outcome="failed").inc()
            return
        await self._store.record_delivery(lease.claim, name, "sent", ref, None)
        report.sent.append(name)
        self._metrics.diagnosis_edits.labels(channel=name, outcome="edited").inc()

    async def _one(
        self,
        notifier: Notifier,
        notification: EnrichedNotification,
        previous: Delivery | None,
        lease: Lease | None,
        report: DeliveryReport,
        *,
        accepted: float | None = None,
    ) -> None:
        name = notifier.name
        if previous is not None and previous.status in ("sent", "failed"):
            report.skipped.append(name)
            self._metrics.deliveries.labels(channel=name, outcome="skipped").inc()
            return
        if not routed(notification, self._routes.get(name, ())):
            self._metrics.deliveries.labels(channel=name, outcome="not_routed").inc()
            return
        thread = await self._thread(notification, name)
        progress = self._progress(name, previous, lease)
        sent, ref = await self._attempt(
            name, notification, lease, report, lambda: notifier.send(notification, thread, progress)
        )
        if not sent:
            return
        if lease is not None:
            opens_thread = thread is None and notification.kind in ("new", "escalation")
            if ref and opens_thread and notification.incident_id is not None:
                await self._store.save_message_ref(lease.claim, notification.incident_id, name, ref)
            await self._store.record_delivery(lease.claim, name, "sent", ref, None)
        report.sent.append(name)
        self._metrics.deliveries.labels(channel=name, outcome="sent").inc()
        if accepted is not None and notification.kind in ("new", "escalation"):
            severity = notification.severity if notification.severity in SEVERITY_RANK else "other"
            self._metrics.time_to_page.labels(severity=severity).observe(
                time.monotonic() - accepted
            )
        # Then what illustrates the message (charts): after it is recorded and timed, so neither
        # waits for a render; their steps are recorded on the same claim, failures given up.
        attach = getattr(notifier, "attach", None)
        if attach is not None:
            await attach(notification, ref, thread, progress)

    async def _attempt(
        self,
        name: str,
        notification: EnrichedNotification,
        lease: Lease | None,
        report: DeliveryReport,
        call: Callable[[], Awaitable[str | None]],
    ) -> tuple[bool, str | None]:
        """One channel's send or edit: (True, its reference), or (False, None) with the failure
        reported (a permanent one also recorded). A lost claim or a store error propagates."""
        try:
            return True, await call()
        except NotifyError as exc:
            self._failed(name, notification, exc.reason, exc.retryable, report)
            if not exc.retryable and lease is not None:
                await self._store.record_delivery(lease.claim, name, "failed", None, exc.reason)
        except (LeaseLostError, StoreError):
            raise
        except Exception as exc:  # a bug in one channel must not stop the others
            log.exception("%s notifier raised unexpectedly", name)
            self._failed(name, notification, f"{type(exc).__name__}: {exc}", True, report)
        return False, None

    def _progress(self, channel: str, previous: Delivery | None, lease: Lease | None) -> Progress:
        done = previous.steps if previous else {}
        if lease is None:
            return Progress(done)
        claim = lease.claim

        async def record(step: str, ref: str | None) -> None:
            await self._store.record_step(claim, channel, step, ref)

        return Progress(done, hold=lease.hold, record=record)

    async def _thread(self, notification: EnrichedNotification, channel: str) -> Thread | None:
        """Follow-ups go into the thread of the incident's first message, when there is one."""
        if notification.kind == "new" or notification.incident_id is None:
            return None
        stored = await self._store.message_ref(notification.incident_id, channel)
        if stored is None:
            return None
        original = None
        if stored.original:
            original = EnrichedNotification.model_validate_json(stored.original)
        return Thread(ref=stored.ref, original=original)

    def _failed(
        self,
        name: str,
        notification: EnrichedNotification,
        reason: str,
        retryable: bool,
        report: DeliveryReport,
    ) -> None:
        kind = "will retry" if retryable else "permanent, not retried"
        log.error(
            "delivery to %s failed (%s) for notification %s: %s",
            name,
            kind,
            notification.notification_id,
            reason,
        )
        (report.retryable if retryable else report.permanent)[name] = reason
        self._metrics.deliveries.labels(channel=name, outcome="failed").inc()


async def _settle(work: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run every channel's part to its end; then a lost claim wins, then any other error."""
    outcomes = await asyncio.gather(*work, return_exceptions=True)
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    lost = [e for e in errors if isinstance(e, LeaseLostError)]
    if lost or errors:
        raise (lost or errors)[0]
