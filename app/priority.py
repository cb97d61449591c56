"""Which pending work goes first: critical pages, then warnings, then the rest.

Every notification gets a rank when it is accepted, from the most severe alert it carries (the
resolve of a critical alert goes with the critical pages, so it never holds back an escalation
queued behind it in its group); a diagnosis edit ranks one below its page. Workers take the lowest
rank first, keeping each group's order. Waiting lowers a rank by one every AGING_SECONDS, so
nothing starves: under a flood of fresh critical pages a warning waits at most two AGING_SECONDS,
the rest four, before it competes as a critical page would.

Rank minus waiting time orders rows the same as `priority(rank, accepted_at)`, a number fixed at
insert: the store indexes it, and a claim reads the first claimable row in that index.
"""

from __future__ import annotations

from app.models import AlertmanagerPayload

SEVERITY_RANK = {"critical": 0, "error": 1, "high": 1, "warning": 2, "info": 3}
REST = 4  # unknown severities, resolve-only notifications
AGING_SECONDS = 30.0
# A diagnosis edit ranks one below its page: the pages of its severity still waiting go first (a
# page is the product; its edit only improves a message already sent), the less severe after.
EDIT_BEHIND = 1


def rank(payload: AlertmanagerPayload) -> int:
    """The rank of the most severe alert it carries; REST for unknown severities."""
    return min((SEVERITY_RANK.get(a.severity, REST) for a in payload.alerts), default=REST)


def priority(rank: int, accepted_at: float) -> float:
    """Lower goes first: `rank - (now - accepted_at) / AGING_SECONDS` in units of AGING_SECONDS,
    without `now`, which is the same for every row."""
    return rank * AGING_SECONDS + accepted_at
