"""Fan-out of one enriched notification to every channel, recorded per channel.

Channels are sent concurrently and independently: one slow or broken channel never holds back another.
A channel that already got this notification (a retry, or work picked up after a crash) is skipped.
Follow-ups (escalation, repeat, resolved) go into the thread of the group's first message, whose
reference the store keeps with the notification that produced it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from app.metrics import Metrics
from app.models import EnrichedNotification
from app.notifiers.base import Notifier, NotifyError, Thread
from app.routing import Matcher, routed
from app.store import Delivery, Store

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

    async def deliver(self, notification: EnrichedNotification) -> DeliveryReport:
        done: dict[str, Delivery] = {}
        if notification.notification_id is not None:
            done = await self._store.deliveries(notification.notification_id)
        report = DeliveryReport()
        await asyncio.gather(
            *(self._one(notifier, notification, done, report) for notifier in self.notifiers)
        )
        return report

    async def _one(
        self,
        notifier: Notifier,
        notification: EnrichedNotification,
        done: dict[str, Delivery],
        report: DeliveryReport,
    ) -> None:
        name = notifier.name
        previous = done.get(name)
        if previous is not None and previous.status in ("sent", "failed"):
            report.skipped.append(name)
            self._metrics.deliveries.labels(channel=name, outcome="skipped").inc()
            return
        if not routed(notification, self._routes.get(name, ())):
            self._metrics.deliveries.labels(channel=name, outcome="not_routed").inc()
            return
        thread = await self._thread(notification, name)
        try:
            ref = await notifier.send(notification, thread)
        except NotifyError as exc:
            self._failed(name, notification, exc.reason, exc.retryable, report)
            if not exc.retryable:
                await self._record(notification, name, "failed", None, exc.reason)
            return
        except Exception as exc:  # a bug in one channel must not stop the others
            log.exception("%s notifier raised unexpectedly", name)
            self._failed(name, notification, f"{type(exc).__name__}: {exc}", True, report)
            return
        await self._record(notification, name, "sent", ref, None)
        if ref and thread is None and notification.kind in ("new", "escalation"):
            await self._store.save_message_ref(
                notification.group_id, name, ref, notification.notification_id
            )
        report.sent.append(name)
        self._metrics.deliveries.labels(channel=name, outcome="sent").inc()

    async def _thread(self, notification: EnrichedNotification, channel: str) -> Thread | None:
        """Follow-ups go into the thread of the group's first message, when there is one."""
        if notification.kind == "new":
            return None
        stored = await self._store.message_ref(notification.group_id, channel)
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

    async def _record(
        self,
        notification: EnrichedNotification,
        channel: str,
        status: str,
        ref: str | None,
        error: str | None,
    ) -> None:
        if notification.notification_id is not None:
            await self._store.record_delivery(
                notification.notification_id, channel, status, ref, error
            )
