"""Which pending work goes first: critical pages, then warnings, then the rest.

Every notification gets a rank when it is accepted, from the most severe alert it fires (a
notification that only resolves is not a page and ranks with the rest, as do diagnosis edits).
Workers take the lowest rank first, keeping each group's order. Waiting lowers a rank by one every
AGING_SECONDS, so nothing starves: under a flood of fresh critical pages a warning waits at most
two AGING_SECONDS, the rest four, before it competes as a critical page would.
"""

from __future__ import annotations

from app.models import AlertmanagerPayload

SEVERITY_RANK = {"critical": 0, "error": 1, "high": 1, "warning": 2, "info": 3}
REST = 4  # unknown severities, resolve-only notifications, diagnosis edits
AGING_SECONDS = 30.0


def rank(payload: AlertmanagerPayload) -> int:
    """The rank of the most severe firing alert; REST when nothing fires."""
    return min((SEVERITY_RANK.get(a.severity, REST) for a in payload.firing), default=REST)
