"""What the service needs from its state: the Store Protocol and the records it hands out.

Guarantees the rest of the service builds on, whatever the backend:
- `accept` commits the payload durably before the webhook answers 202; the dedup check and the
  insert are one transaction, so two replicas of the same Alertmanager notification store it once.
- A claim carries a fencing token that grows with every claim of the notification, and a lease.
  Every write a worker makes about its claim names the token; once another worker has claimed the
  notification (or the lease ran out, for `renew`), the write changes nothing and raises
  LeaseLostError, so a stalled worker cannot record, finish or send anything more.
- Lease time is one clock for every process sharing the store: the host's monotonic clock for
  SQLite (one host), the database server's clock for PostgreSQL (many hosts).
- Notifications of one alert group are claimed in arrival order: a group's next notification waits
  until the earlier one is finished, so a "resolved" follow-up never overtakes its "firing" message.
- Deliveries are recorded per channel and per step (a Telegram part, Slack's reply and its update),
  so a retry re-sends nothing that already went out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.incident import Incident, Transition
from app.priority import REST
from app.store.history import AlertEpisode, IncidentHistory


class StoreError(Exception):
    """The store could not do what was asked (disk full, read-only, corrupt, unreachable)."""


class LeaseLostError(Exception):
    """This worker's claim was taken over or ran out: it must stop and send nothing more."""


@dataclass(frozen=True)
class Accepted:
    id: int
    duplicate: bool


@dataclass(frozen=True)
class Claim:
    """A worker's hold on one notification; `token` fences every write made under it."""

    notification_id: int
    owner: str
    token: int


@dataclass(frozen=True)
class StoredNotification:
    """A claimed notification. `kind` "alert" carries Alertmanager's payload; "edit" carries the
    final diagnosis (a DiagnosisResult's JSON) owed to the page `target_id`. `age`: seconds since
    it was accepted, on the store's clock."""

    id: int
    group_id: str
    payload: str
    attempts: int
    enrichment: str | None
    incident_id: int | None
    claim: Claim
    kind: str = "alert"
    target_id: int | None = None
    age: float = 0.0


@dataclass(frozen=True)
class QueuedDiagnosis:
    """A page's LLM diagnosis to queue: the JSON list of MetricContext, and the page's rank."""

    context: str
    rank: int


@dataclass(frozen=True)
class DiagnosisJob:
    """The LLM lane's claim on one page's diagnosis: the page's payload and metric context (the
    JSON list of MetricContext it was sent with), and how long ago the page was accepted."""

    payload: str
    context: str
    age: float
    claim: Claim


@dataclass(frozen=True)
class EditTarget:
    """The page a diagnosis edit applies to: what it showed, and whether its incident is still open
    (once resolved, the resolution wins and nothing is edited back to firing)."""

    enrichment: str | None
    incident_open: bool


@dataclass(frozen=True)
class MessageRef:
    """A channel's reference to the first message of an incident, and that message's enrichment."""

    ref: str
    original: str | None


@dataclass(frozen=True)
class NotificationRecord:
    """One notification as the admin commands (`list`, `show`, `retry`) see it; times are Unix
    seconds on the store's clock."""

    id: int
    kind: str
    group_id: str
    state: str  # pending, processing, done, failed
    attempts: int
    received_at: float
    finished_at: float | None
    last_error: str | None
    payload: str
    enrichment: str | None


@dataclass(frozen=True)
class DailySpend:
    """What the LLM cost on one UTC day, over every replica (LLM_DAILY_BUDGET_USD)."""

    usd: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[Any]]) -> DailySpend:
        """From `SELECT usd, prompt_tokens, completion_tokens, calls` (no row: nothing spent)."""
        if not rows:
            return cls()
        usd, prompt, completion, calls = rows[0]
        return cls(float(usd), int(prompt), int(completion), int(calls))


@dataclass(frozen=True)
class Delivery:
    """One channel's delivery of a notification: its outcome, and the steps already done."""

    channel: str
    status: str  # "sent", "failed" (permanently), or "partial" (some steps done)
    ref: str | None
    error: str | None
    steps: dict[str, str | None] = field(default_factory=dict)


# What both backends read back, from rows in the same column order.


def ignore_answer(notification_id: int) -> None:
    """`Store.watch`'s answered hook where nobody waits for diagnoses (no LLM lane)."""


def claimed(row: Sequence[Any], owner: str) -> StoredNotification:
    """A claim's RETURNING row: id, group_id, payload, attempts, enrichment, incident_id, fence,
    kind, target_id, age in seconds."""
    id_, group_id, payload, attempts, enrichment, incident_id, fence, kind, target, age = row
    return StoredNotification(
        id_,
        group_id,
        payload,
        attempts,
        enrichment,
        incident_id,
        Claim(id_, owner, fence),
        kind=kind,
        target_id=target,
        age=max(0.0, float(age)),
    )


def open_incident_from(group_id: str, row: Sequence[Any] | None) -> Incident | None:
    """An open incident's row: id, firing (a JSON list of fingerprints)."""
    if row is None:
        return None
    return Incident(id=row[0], group_id=group_id, firing=frozenset(json.loads(row[1])))


def deliveries_from(
    outcomes: Iterable[Sequence[Any]], steps: Iterable[Sequence[Any]]
) -> dict[str, Delivery]:
    """Per channel: (channel, status, ref, error) rows, then the (channel, step, ref) steps done;
    a channel with steps and no outcome yet is "partial"."""
    found = {row[0]: Delivery(*row) for row in outcomes}
    for channel, step, ref in steps:
        found.setdefault(channel, Delivery(channel, "partial", None, None)).steps[step] = ref
    return found


class Store(Protocol):
    async def ping(self) -> None: ...
    async def accept(
        self, key: str, group_id: str, payload: str, window: float, rank: int = REST
    ) -> Accepted: ...
    async def claim(self, owner: str, lease: float) -> StoredNotification | None: ...
    async def renew(self, claim: Claim, lease: float) -> bool:
        """Extend the lease; False once the claim was taken over or the lease had run out."""
        ...

    async def finish(self, claim: Claim) -> None: ...
    async def retry_later(self, claim: Claim, error: str, delay: float) -> None: ...
    async def give_up(self, claim: Claim, error: str) -> None: ...
    async def release(self, claim: Claim) -> None: ...
    async def open_incident(self, group_id: str) -> Incident | None: ...
    async def incident_history(self, group_id: str, within_seconds: float) -> IncidentHistory:
        """The group's incidents that ended in the last `within_seconds`, and its last diagnosis
        (incident memory, app/memory.py)."""
        ...

    async def alert_history(self, fingerprint: str, within_seconds: float) -> list[AlertEpisode]:
        """The firings of one alert (its fingerprint) in notifications received in the last
        `within_seconds`, whatever group they came in (incident memory, app/memory.py)."""
        ...

    async def hold_role(self, role: str, owner: str, seconds: float) -> bool:
        """Take or extend the role `role` for `seconds` when it is free, expired or `owner`'s
        already; whether `owner` holds it now. One holder at a time across every process sharing
        the store (a job only one may do, such as long-polling Telegram)."""
        ...

    async def drop_role(self, role: str, owner: str) -> None:
        """Give the role up, when `owner` holds it, so another takes it at once."""
        ...

    async def save_enrichment(
        self,
        claim: Claim,
        enrichment: str,
        transition: Transition,
        owed: QueuedDiagnosis | None = None,
    ) -> int | None:
        """Save the enrichment and advance the group's incident together; the incident's id.
        With `owed`, the page goes without its LLM diagnosis: it is queued in the same
        transaction, already owed as an edit (as `queue_diagnosis` then `take_diagnosis` would)."""
        ...

    async def deliveries(self, notification_id: int) -> dict[str, Delivery]: ...
    async def record_step(self, claim: Claim, channel: str, step: str, ref: str | None) -> None: ...
    async def record_delivery(
        self, claim: Claim, channel: str, status: str, ref: str | None, error: str | None
    ) -> None: ...
    async def message_ref(self, incident_id: int, channel: str) -> MessageRef | None: ...
    async def save_message_ref(
        self, claim: Claim, incident_id: int, channel: str, ref: str
    ) -> None: ...
    async def backlog(self) -> int: ...
    async def oldest_backlog_age(self) -> float:
        """Seconds since the oldest notification not yet finished was accepted; 0 with none."""
        ...

    async def add_llm_spend(
        self, day: str, usd: float, prompt_tokens: int, completion_tokens: int
    ) -> None:
        """Add one diagnosis's cost to its UTC day (`YYYY-MM-DD`)."""
        ...

    async def llm_spend(self, day: str) -> DailySpend: ...

    # The admin commands (app/admin.py).
    async def notifications(
        self, since: float | None, failed_only: bool, limit: int
    ) -> list[NotificationRecord]:
        """Newest first: those received at or after `since` (Unix seconds), only the failed."""
        ...

    async def notification(self, notification_id: int) -> NotificationRecord | None: ...
    async def requeue(self, notification_id: int) -> bool:
        """A failed notification pending again, at once and with fresh attempts; its channels'
        permanent failures forgotten, so those get it and the ones that did get it do not.
        False when it is not failed (or not there)."""
        ...

    # The LLM lane (app/diagnosis_lane.py): a page's diagnosis, queued durably beside the page.
    async def queue_diagnosis(self, claim: Claim, context: str, rank: int) -> None:
        """Queue the LLM diagnosis of the claimed page, once (a retry queues nothing more)."""
        ...

    async def take_diagnosis(self, claim: Claim) -> str | None:
        """The page's final diagnosis if it is ready; else None, and from then on the answer is
        owed as an edit (`answer_diagnosis` queues it). Atomic with `answer_diagnosis`."""
        ...

    async def claim_diagnosis(self, owner: str, lease: float) -> DiagnosisJob | None: ...
    async def answer_diagnosis(self, claim: Claim, result: str) -> bool:
        """Record the answer; True when the page went without it and an edit was queued."""
        ...

    async def edit_target(self, notification_id: int) -> EditTarget | None: ...
    async def llm_backlog(self) -> int:
        """Diagnoses queued or running in the LLM lane (/health shows it beside the backlog)."""
        ...

    async def diagnosis_answered(self, notification_id: int) -> bool:
        """Whether the page's diagnosis has its answer (the page still takes it with
        `take_diagnosis`): what a waiting page checks when no word of it came."""
        ...

    async def revise(self, claim: Claim, target_id: int, enrichment: str) -> None:
        """The edit's holder saves what the page shows now (a later resolve renders it)."""
        ...

    async def purge(self, older_than_seconds: float) -> int:
        """Forget what belongs to incidents that ended (or went silent) before the cutoff."""
        ...

    async def watch(
        self, wake: Callable[[], None], answered: Callable[[int], None] = ignore_answer
    ) -> None:
        """Call `wake` whenever another process makes work claimable, and `answered` with the
        notification id whenever another process answers a diagnosis a page may wait for; runs
        until cancelled."""
        ...

    async def close(self) -> None: ...
