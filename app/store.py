"""Durable queue, dedup, delivery records and message references (SQLite by default).

Guarantees the rest of the service builds on:
- `accept` commits the payload (fsync'd, WAL + synchronous=FULL) before the webhook answers 202;
  the dedup check and the insert run in one IMMEDIATE transaction, so two replicas of the same
  Alertmanager notification racing each other still store it once.
- A claimed notification carries a lease. Workers renew it while they work; a crashed process's
  lease runs out and another worker claims the notification again.
- Notifications of one alert group are claimed in arrival order: a group's next notification waits
  until the earlier one is finished, so a "resolved" follow-up never overtakes its "firing" message.
- Deliveries are recorded per channel, so a retried notification skips channels that already got it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class StoreError(Exception):
    """The store could not do what was asked (disk full, read-only, corrupt, unreachable)."""


@dataclass(frozen=True)
class Accepted:
    id: int
    duplicate: bool


@dataclass(frozen=True)
class StoredNotification:
    id: int
    group_id: str
    payload: str
    attempts: int
    enrichment: str | None


@dataclass(frozen=True)
class GroupState:
    """What the last processed notification of a group left: its firing alerts and thread root."""

    firing: frozenset[str]
    root_id: int


@dataclass(frozen=True)
class MessageRef:
    """A channel's reference to a group's first message, and that message's enrichment JSON."""

    ref: str
    original: str | None


@dataclass(frozen=True)
class Delivery:
    channel: str
    status: str
    ref: str | None
    error: str | None


class Store(Protocol):
    """What the service needs from its state; SQLiteStore is the default backend."""

    async def ping(self) -> None: ...
    async def accept(self, key: str, group_id: str, payload: str, window: float) -> Accepted: ...
    async def claim(self, owner: str, lease: float) -> StoredNotification | None: ...
    async def renew(self, notification_id: int, owner: str, lease: float) -> bool: ...
    async def finish(self, notification_id: int, owner: str) -> None: ...
    async def retry_later(
        self, notification_id: int, owner: str, error: str, delay: float
    ) -> None: ...
    async def give_up(self, notification_id: int, owner: str, error: str) -> None: ...
    async def release(self, notification_id: int, owner: str) -> None: ...
    async def group_state(self, group_id: str) -> GroupState | None: ...
    async def save_enrichment(
        self, notification_id: int, enrichment: str, group_id: str, state: GroupState | None
    ) -> None: ...
    async def deliveries(self, notification_id: int) -> dict[str, Delivery]: ...
    async def record_delivery(
        self, notification_id: int, channel: str, status: str, ref: str | None, error: str | None
    ) -> None: ...
    async def message_ref(self, group_id: str, channel: str) -> MessageRef | None: ...
    async def save_message_ref(
        self, group_id: str, channel: str, ref: str, notification_id: int | None
    ) -> None: ...
    async def backlog(self) -> int: ...
    async def purge(self, older_than_seconds: float) -> int: ...
    async def close(self) -> None: ...


async def open_store(store_url: str) -> Store:
    """Build the store named by STORE_URL (only SQLite is built in for now)."""
    from app.sqlite_store import SQLiteStore  # noqa: PLC0415 - the backend depends on this module

    return await SQLiteStore.open(store_url)
