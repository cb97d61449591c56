"""What both store backends share of incident memory (app/memory.py): the records they return and
how they read them from stored rows (the last diagnosis, an alert's firings in its payloads)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class IncidentHistory:
    """A group's incidents that ended within the window ((opened, ended) in Unix seconds on the
    store's clock, oldest first), and the text of the last diagnosis given for the group (the final
    one, when its page went out preliminary)."""

    ended: list[tuple[float, float]]
    last_diagnosis: str | None = None


HISTORY_ROWS = 10  # of a group's latest notifications, searched for its last diagnosis
ALERT_HISTORY_ROWS = 200  # an alert's latest firings remembered


@dataclass(frozen=True)
class AlertEpisode:
    """One firing of one alert (one fingerprint: this alertname on this target) as Alertmanager
    reported it: when it started and, once a notification said it resolved, when it ended (Unix
    seconds on Alertmanager's clock)."""

    started: float
    ended: float | None = None


def alert_episodes(rows: Iterable[tuple[float, float | None]]) -> list[AlertEpisode]:
    """The store's rows of an alert's firings, (started, ended) newest first: oldest first."""
    return [
        AlertEpisode(float(s), None if e is None else float(e)) for s, e in reversed(list(rows))
    ]


def last_diagnosis(rows: list[tuple[str | None, str | None]]) -> str | None:
    """The first diagnosis text among (diagnosis result, enrichment) JSON pairs, newest first: the
    LLM lane's result when there is one, else the message's own. Unreadable rows are skipped."""
    for result, enrichment in rows:
        for text in (result, enrichment):
            try:
                diagnosis = json.loads(text)["diagnosis"]["diagnosis"] if text else None
            except (ValueError, KeyError, TypeError):
                continue
            if isinstance(diagnosis, str) and diagnosis:
                return diagnosis
    return None
