"""Silences from the chat: what a button asks for, and doing it in Alertmanager.

A button carries a notification id and a duration (`silence:42:4`), or a silence id
(`expire:<uuid>`), and never matchers: what a silence matches is read from the store's copy of the
notification the message showed, so a forged click can at most silence an alert the service paged
about, for one of DURATIONS_HOURS. The matchers are the alert's labels when the message is about one
firing alert, else the group's labels (Alertmanager's `groupLabels`), exact values only.

Silences are made only at ALERTMANAGER_URL (never a payload's `externalURL`) and are idempotent
(app/alertmanager.py): a double tap or a retried click finds the silence the first one made.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from pydantic import ValidationError

from app.alertmanager import (
    SILENCE_ID,
    AlertmanagerClient,
    AlertmanagerError,
    Matcher,
    Silence,
    exact_matchers,
)
from app.formatting import clean, shorten
from app.models import AlertmanagerPayload, EnrichedNotification
from app.store.base import NotificationRecord, StoreError

if TYPE_CHECKING:
    import httpx

DURATIONS_HOURS = (1, 4, 24)
ALERTMANAGER_TIMEOUT_SECONDS = 5.0
MAX_VALUE_CHARS = 64  # Telegram's callback_data limit; Slack's is larger
_SILENCE = re.compile(r"silence:([1-9][0-9]{0,17}):([0-9]{1,3})")
_EXPIRE = re.compile(rf"expire:({SILENCE_ID.pattern})")


class SilenceError(Exception):
    """A click that cannot be done; the message is for the person who clicked."""


@dataclass(frozen=True)
class SilenceAsk:
    notification_id: int
    hours: int


@dataclass(frozen=True)
class ExpireAsk:
    silence_id: str


def silence_value(notification_id: int, hours: int) -> str:
    return f"silence:{notification_id}:{hours}"


def expire_value(silence_id: str) -> str:
    return f"expire:{silence_id}"


@dataclass(frozen=True)
class Offer:
    """One silence button: its duration, its label and the value it carries."""

    hours: int
    label: str
    value: str


def offers(n: EnrichedNotification) -> list[Offer]:
    """The silence buttons under a new page or escalation the store knows; none under follow-ups
    (each chat draws them its own way: Slack's actions block, Telegram's inline keyboard)."""
    if n.kind not in ("new", "escalation") or not n.firing or n.notification_id is None:
        return []
    return [
        Offer(hours, f"🔕 Silence {hours}h", silence_value(n.notification_id, hours))
        for hours in DURATIONS_HOURS
    ]


def parse(value: object) -> SilenceAsk | ExpireAsk:
    """A button's value, or SilenceError for anything this service did not put on a button."""
    text = value if isinstance(value, str) else ""
    if (found := _SILENCE.fullmatch(text)) and int(found[2]) in DURATIONS_HOURS:
        return SilenceAsk(int(found[1]), int(found[2]))
    if found := _EXPIRE.fullmatch(text):
        return ExpireAsk(found[1].lower())
    raise SilenceError("not a button of this service")


def matchers_for(payload: AlertmanagerPayload) -> list[Matcher]:
    """One firing alert: its labels; a group: the labels it is grouped by (common labels when
    Alertmanager groups by everything, `group_by: ['...']`)."""
    firing = payload.firing or payload.alerts
    labels = firing[0].labels if len(firing) == 1 else payload.group_labels or payload.common_labels
    if not labels:
        raise SilenceError("the alert group has no labels to silence it by")
    return exact_matchers(labels)


def describe(matchers: list[Matcher] | tuple[Matcher, ...]) -> str:
    """`alertname="APIDown", exchange="binance"`: what a silence matches, cleaned, shortened."""
    text = ", ".join(f'{m.name}="{m.value}"' for m in matchers)
    return shorten(clean(text), 300)


class NotificationStore(Protocol):
    async def notification(self, notification_id: int) -> NotificationRecord | None: ...


class Silencer:
    """Makes and expires the silences chat buttons ask for."""

    def __init__(
        self,
        store: NotificationStore,
        alertmanager: AlertmanagerClient,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._alertmanager = alertmanager
        self._now = now

    async def silence(self, ask: SilenceAsk, who: str, where: str) -> Silence:
        """The silence `who` asked for from the message at `where` (made, or found made)."""
        try:
            record = await self._store.notification(ask.notification_id)
        except StoreError as exc:
            raise SilenceError("the store is not answering; try again in a moment") from exc
        if record is None:
            raise SilenceError("that alert is no longer in the store (past its retention)")
        try:
            payload = AlertmanagerPayload.model_validate_json(record.payload)
        except ValidationError as exc:
            raise SilenceError("the stored alert cannot be read") from exc
        comment = shorten(
            clean(f"Silenced from {where} (alert-enricher notification {ask.notification_id})"),
            500,
        )
        try:
            return await self._alertmanager.create_silence(
                matchers_for(payload),
                ends_at=self._now() + timedelta(hours=ask.hours),
                created_by=shorten(clean(who), 200),
                comment=comment,
            )
        except AlertmanagerError as exc:
            raise SilenceError(f"Alertmanager did not take the silence: {exc}") from exc

    async def ping(self) -> int:
        """How many silences Alertmanager holds (for `check`); AlertmanagerError when it cannot
        say."""
        return len(await self._alertmanager.list_silences())

    async def expire(self, ask: ExpireAsk) -> None:
        try:
            await self._alertmanager.expire_silence(ask.silence_id)
        except AlertmanagerError as exc:
            if exc.not_found:
                raise SilenceError("Alertmanager does not know that silence any more") from exc
            raise SilenceError(f"Alertmanager did not expire the silence: {exc}") from exc


def until(moment: datetime) -> str:
    """`14:05 UTC` today-ish, `22 Nov 14:05 UTC` later."""
    return moment.astimezone(UTC).strftime("%d %b %H:%M UTC")


def open_silencer(
    alertmanager_url: str, store: NotificationStore
) -> tuple[Silencer, httpx.AsyncClient]:
    """The silencer for chat buttons at ALERTMANAGER_URL, and its HTTP client (to close)."""
    import httpx  # noqa: PLC0415 - only where silences are made: the webhook's process may not

    client = httpx.AsyncClient(timeout=ALERTMANAGER_TIMEOUT_SECONDS)
    alertmanager = AlertmanagerClient(client, alertmanager_url, ALERTMANAGER_TIMEOUT_SECONDS)
    return Silencer(store, alertmanager), client
