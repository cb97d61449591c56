"""An alert group's incident: from the notification that starts it firing until none of it fires.

Alertmanager sends a group's notification again and again: when alerts join it, every
`repeat_interval`, when some or all resolve. What each one means is decided here, once, from the
group's open incident (what the store knows is firing now):

- `new`: nothing of the group was firing. It opens an incident; its message starts the chat thread.
- `escalation`: alerts joined a firing incident: a new diagnosis, posted in the incident's thread.
- `repeat`: the same alerts still fire, nothing changed: a short reply, no LLM call.
- `resolved`: some or all alerts resolved and none joined: a reply; the incident ends when none fire.

Threads belong to incidents, not to groups: when a group fires again after it resolved, a new
incident starts a new thread. Retention never purges an incident that is still live (the store keeps
it, its thread references and its first message for as long as Alertmanager keeps repeating it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

from app.models import Alert, AlertmanagerPayload, Kind

# Alertmanager's fingerprints are 16 hex digits; anything else (NUL, markup, 10 kB) is not its own.
FINGERPRINT = re.compile(r"[0-9A-Za-z_.:-]{1,64}")


class Firing(NamedTuple):
    """One firing of one alert as a notification reports it (Unix seconds on Alertmanager's
    clock): the store keeps one row per (fingerprint, started), the incident memory of the alert
    itself (app/memory.py), and the end once a notification said it resolved."""

    fingerprint: str
    started: float
    ended: float | None


def firing_of(alert: Alert) -> Firing | None:
    """The alert's firing, or None without a fingerprint (Alertmanager's) or a start."""
    if not FINGERPRINT.fullmatch(alert.fingerprint):
        return None
    if alert.starts_at is None:
        return None
    ended = alert.ends_at.timestamp() if alert.status == "resolved" and alert.ends_at else None
    return Firing(alert.fingerprint, alert.starts_at.timestamp(), ended)


def firings_of(alerts: list[Alert]) -> tuple[Firing, ...]:
    """Each distinct firing once (a payload naming one twice keeps what it says of its end), in
    key order: concurrent writers then lock the same rows in the same order."""
    found: dict[tuple[str, float], Firing] = {}
    for alert in alerts:
        if (f := firing_of(alert)) is not None:
            known = found.get((f.fingerprint, f.started))
            found[(f.fingerprint, f.started)] = f if known is None or known.ended is None else known
    return tuple(sorted(found.values(), key=lambda f: (f.fingerprint, f.started)))


@dataclass(frozen=True)
class Incident:
    """A group's open incident: the fingerprints firing after its latest notification."""

    id: int
    group_id: str
    firing: frozenset[str]


@dataclass(frozen=True)
class Transition:
    """What one notification does to its group's incident."""

    kind: Kind
    group_id: str
    incident_id: int | None  # the incident it belongs to; None: it opens one (or has none)
    firing: frozenset[str]  # what fires once it is processed
    firings: tuple[Firing, ...] = ()  # each alert's firing, for the store's memory of alerts

    @property
    def opens(self) -> bool:
        return self.incident_id is None and bool(self.firing)

    @property
    def ends(self) -> bool:
        return self.incident_id is not None and not self.firing


def classify(payload: AlertmanagerPayload, incident: Incident | None) -> Kind:
    """What this notification means for its group, given the group's open incident."""
    firing = {a.identity for a in payload.firing}
    if not firing:
        return "resolved"
    if incident is None:
        return "new"
    if firing - incident.firing:
        return "escalation"
    newly_resolved = {a.identity for a in payload.resolved} & incident.firing
    if newly_resolved or firing < incident.firing:
        return "resolved"
    return "repeat"


def transition(payload: AlertmanagerPayload, incident: Incident | None) -> Transition:
    """The notification's kind and the incident's state after it."""
    return Transition(
        kind=classify(payload, incident),
        group_id=payload.group_id,
        incident_id=incident.id if incident else None,
        firing=frozenset(a.identity for a in payload.firing),
        firings=firings_of(payload.alerts),
    )
