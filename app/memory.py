"""Incident memory: how often a group fired in the last 7 days, how long it lasted, and what was
diagnosed last time; and how often its lead alert (this alertname on this target) fired, whatever
group it came in. One line in the message, evidence in the prompt; no LLM call of its own.

From the store's incidents (`Store.incident_history`) and stored payloads (`Store.alert_history`);
a store that cannot answer within a second leaves the message without the line rather than holding
the page."""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from statistics import median
from typing import Any, Protocol

from app.formatting import clean, shorten
from app.language import ENGLISH, Words
from app.models import Alert
from app.store.base import StoreError
from app.store.history import AlertEpisode, IncidentHistory

log = logging.getLogger(__name__)

WINDOW_SECONDS = 7 * 86400  # the words say "7 days" (app/language.py)
LOOKUP_SECONDS = 1.0
LAST_DIAGNOSIS_CHARS = 200


class HistoryStore(Protocol):
    async def incident_history(self, group_id: str, within_seconds: float) -> IncidentHistory: ...
    async def alert_history(
        self, fingerprint: str, within_seconds: float
    ) -> list[AlertEpisode]: ...


def minutes(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))}s" if seconds < 60 else "1 min"
    if seconds < 2 * 3600:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


TARGET_LABELS = ("exchange", "instance", "job")  # what names an alert's target, first found wins
NAME_CHARS = 80


@dataclass(frozen=True)
class AlertMemory:
    """Earlier firings of the lead alert itself (its fingerprint: this alertname on this target),
    whatever group they came in. A group keyed by fewer labels than the alert's (`group_by:
    [alertname]`) mixes targets, and a target's alert may have fired in another group before."""

    alertname: str
    target: str | None
    before: int  # firings that started before this one, within the window
    typical_seconds: float | None  # median duration of those that resolved

    @classmethod
    def of(cls, alert: Alert, episodes: list[AlertEpisode]) -> AlertMemory | None:
        now = alert.starts_at.timestamp() if alert.starts_at else math.inf
        earlier = [e for e in episodes if e.started < now]
        if not earlier:
            return None
        durations = [max(0.0, e.ended - e.started) for e in earlier if e.ended is not None]
        target = next((alert.labels[k] for k in TARGET_LABELS if alert.labels.get(k)), None)
        return cls(
            alertname=shorten(clean(alert.name), NAME_CHARS),
            target=shorten(clean(target), NAME_CHARS) if target else None,
            before=len(earlier),
            typical_seconds=median(durations) if durations else None,
        )

    def name_in(self, words: Words) -> str:
        return f"{self.alertname} {words.on} {self.target}" if self.target else self.alertname

    def line_in(self, words: Words) -> str:
        """`APIDown on binance: 3rd time in 7 days; usually resolves in ~4 min`."""
        return f"{self.name_in(words)}: " + _times(words, self.before, self.typical_seconds)

    def evidence(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"alert": self.name_in(ENGLISH), "earlier_firings_7d": self.before}
        if self.typical_seconds is not None:
            facts["median_minutes_to_resolve"] = round(self.typical_seconds / 60, 1)
        return facts


def _times(words: Words, before: int, typical_seconds: float | None) -> str:
    text = words.nth_time.format(ordinal=words.ordinal(before + 1))
    if typical_seconds is not None:
        text += "; " + words.usually_resolves.format(typical=minutes(typical_seconds))
    return text


@dataclass(frozen=True)
class Memory:
    """What the store remembers of a group's earlier incidents and of its lead alert's earlier
    firings (None when neither has a past)."""

    before: int  # incidents of the group that ended within the window
    typical_seconds: float | None  # their median duration
    shortest_seconds: float | None
    longest_seconds: float | None
    last_diagnosis: str | None
    alert: AlertMemory | None = None

    @classmethod
    def of(cls, history: IncidentHistory, alert: AlertMemory | None = None) -> Memory | None:
        if not history.ended and alert is None:
            return None
        durations = [max(0.0, end - opened) for opened, end in history.ended]
        return cls(
            before=len(durations),
            typical_seconds=median(durations) if durations else None,
            shortest_seconds=min(durations, default=None),
            longest_seconds=max(durations, default=None),
            last_diagnosis=history.last_diagnosis if durations else None,
            alert=alert,
        )

    @property
    def line(self) -> str:
        return self.line_in(ENGLISH)

    def line_in(self, words: Words) -> str:
        """`4th time in 7 days; usually resolves in ~9 min (4 min to 12 min)`, and the lead alert's
        own count when it differs from the group's: `· APIDown on binance: 6th time in 7 days`."""
        parts = []
        if self.before:
            text = _times(words, self.before, self.typical_seconds)
            if self.before > 1 and self.shortest_seconds != self.longest_seconds:
                shortest, longest = self.shortest_seconds or 0, self.longest_seconds or 0
                span = words.range.format(shortest=minutes(shortest), longest=minutes(longest))
                text += f" ({span})"
            parts.append(text)
        if self.alert and self.alert.before != self.before:
            parts.append(self.alert.line_in(words))
        return " · ".join(parts)

    def evidence(self) -> dict[str, Any]:
        """For the prompt's data: the same facts, and the last diagnosis, shortened."""
        facts: dict[str, Any] = {}
        if self.before:
            facts["earlier_incidents_7d"] = self.before
            facts["median_minutes_to_resolve"] = round((self.typical_seconds or 0) / 60, 1)
        if self.last_diagnosis:
            facts["last_diagnosis"] = shorten(self.last_diagnosis, LAST_DIAGNOSIS_CHARS)
        if self.alert:
            facts["this_alert"] = self.alert.evidence()
        return facts


async def recall(
    store: HistoryStore | None, group_id: str, lead: Alert | None = None
) -> Memory | None:
    """The group's memory and its lead alert's, or None: no store, no earlier incident or firing,
    or a store that did not answer within LOOKUP_SECONDS."""
    if store is None:
        return None
    episodes: list[AlertEpisode] = []
    try:
        async with asyncio.timeout(LOOKUP_SECONDS):
            history = await store.incident_history(group_id, WINDOW_SECONDS)
            if lead is not None and lead.fingerprint:
                episodes = await store.alert_history(lead.fingerprint, WINDOW_SECONDS)
    except (StoreError, TimeoutError) as exc:
        log.warning("incident memory unavailable: %s", exc or type(exc).__name__)
        return None
    return Memory.of(history, AlertMemory.of(lead, episodes) if lead else None)
