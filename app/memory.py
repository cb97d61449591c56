"""Incident memory: how often a group fired in the last 7 days, how long it lasted, and what was
diagnosed last time. One line in the message, evidence in the prompt; no LLM call of its own.

From the store's incidents (`Store.incident_history`); a store that cannot answer within a second
leaves the message without the line rather than holding the page."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from statistics import median
from typing import Any, Protocol

from app.formatting import shorten
from app.language import ENGLISH, Words
from app.store.base import IncidentHistory, StoreError

log = logging.getLogger(__name__)

WINDOW_SECONDS = 7 * 86400  # the words say "7 days" (app/language.py)
LOOKUP_SECONDS = 1.0
LAST_DIAGNOSIS_CHARS = 200


class HistoryStore(Protocol):
    async def incident_history(self, group_id: str, within_seconds: float) -> IncidentHistory: ...


def minutes(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))}s" if seconds < 60 else "1 min"
    if seconds < 2 * 3600:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


@dataclass(frozen=True)
class Memory:
    """What the store remembers of a group's earlier incidents (none when it fired before never)."""

    before: int  # incidents of the group that ended within the window
    typical_seconds: float | None  # their median duration
    shortest_seconds: float | None
    longest_seconds: float | None
    last_diagnosis: str | None

    @classmethod
    def of(cls, history: IncidentHistory) -> Memory | None:
        if not history.ended:
            return None
        durations = [max(0.0, end - opened) for opened, end in history.ended]
        return cls(
            before=len(durations),
            typical_seconds=median(durations),
            shortest_seconds=min(durations),
            longest_seconds=max(durations),
            last_diagnosis=history.last_diagnosis,
        )

    @property
    def line(self) -> str:
        return self.line_in(ENGLISH)

    def line_in(self, words: Words) -> str:
        """`4th time in 7 days; usually resolves in ~9 min (4 min to 12 min)`."""
        text = words.nth_time.format(ordinal=words.ordinal(self.before + 1))
        if self.typical_seconds is not None:
            text += "; " + words.usually_resolves.format(typical=minutes(self.typical_seconds))
            if self.before > 1 and self.shortest_seconds != self.longest_seconds:
                shortest, longest = self.shortest_seconds or 0, self.longest_seconds or 0
                span = words.range.format(shortest=minutes(shortest), longest=minutes(longest))
                text += f" ({span})"
        return text

    def evidence(self) -> dict[str, Any]:
        """For the prompt's data: the same facts, and the last diagnosis, shortened."""
        facts: dict[str, Any] = {
            "earlier_incidents_7d": self.before,
            "median_minutes_to_resolve": round((self.typical_seconds or 0) / 60, 1),
        }
        if self.last_diagnosis:
            facts["last_diagnosis"] = shorten(self.last_diagnosis, LAST_DIAGNOSIS_CHARS)
        return facts


async def recall(store: HistoryStore | None, group_id: str) -> Memory | None:
    """The group's memory, or None: no store, no earlier incident, or a store that did not answer."""
    if store is None:
        return None
    try:
        async with asyncio.timeout(LOOKUP_SECONDS):
            history = await store.incident_history(group_id, WINDOW_SECONDS)
    except (StoreError, TimeoutError) as exc:
        log.warning("incident memory unavailable: %s", exc or type(exc).__name__)
        return None
    return Memory.of(history)
