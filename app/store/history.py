"""What both store backends share of incident memory (app/memory.py): the records they return and
how they read them from stored rows (the last diagnosis, an alert's firings in its payloads)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import ValidationError

from app.models import Alert


@dataclass(frozen=True)
class IncidentHistory:
    """A group's incidents that ended within the window ((opened, ended) in Unix seconds on the
    store's clock, oldest first), and the text of the last diagnosis given for the group (the final
    one, when its page went out preliminary)."""

    ended: list[tuple[float, float]]
    last_diagnosis: str | None = None


HISTORY_ROWS = 10  # of a group's latest notifications, searched for its last diagnosis
ALERT_HISTORY_ROWS = 200  # of the latest notifications naming an alert, searched for its firings


@dataclass(frozen=True)
class AlertEpisode:
    """One firing of one alert (one fingerprint: this alertname on this target) as Alertmanager
    reported it: when it started and, once a notification said it resolved, when it ended (Unix
    seconds on Alertmanager's clock)."""

    started: float
    ended: float | None = None


def alert_episodes(payloads: Iterable[str], fingerprint: str) -> list[AlertEpisode]:
    """The distinct firings of the alert `fingerprint` in stored webhook payloads, oldest first.
    Alertmanager keeps an alert's startsAt while it fires, so one firing seen in many notifications
    (repeats, group changes) is one episode; unreadable payloads and alerts are skipped."""
    ends: dict[float, float | None] = {}
    for text in payloads:
        for alert in _alerts_in(text):
            if alert.fingerprint != fingerprint or alert.starts_at is None:
                continue
            started = alert.starts_at.timestamp()
            ended = (
                alert.ends_at.timestamp() if alert.status == "resolved" and alert.ends_at else None
            )
            ends[started] = ends.get(started) or ended
    return [AlertEpisode(started, ended) for started, ended in sorted(ends.items())]


def _alerts_in(text: str) -> list[Alert]:
    try:
        items = json.loads(text)["alerts"]
    except (ValueError, KeyError, TypeError):
        return []
    alerts = []
    for item in items if isinstance(items, list) else []:
        try:
            alerts.append(Alert.model_validate(item))
        except ValidationError:
            continue
    return alerts


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
