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

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


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


SCHEMA = """
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    idem_key TEXT NOT NULL,
    group_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    received_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    enrichment TEXT,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS notifications_idem ON notifications (idem_key, received_at);
CREATE INDEX IF NOT EXISTS notifications_open ON notifications (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS notifications_group ON notifications (group_id, id);
CREATE TABLE IF NOT EXISTS deliveries (
    notification_id INTEGER NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    channel TEXT NOT NULL,
    status TEXT NOT NULL,
    ref TEXT,
    error TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (notification_id, channel)
);
CREATE TABLE IF NOT EXISTS message_refs (
    group_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    ref TEXT NOT NULL,
    notification_id INTEGER,
    updated_at REAL NOT NULL,
    PRIMARY KEY (group_id, channel)
);
CREATE TABLE IF NOT EXISTS heartbeat (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS groups (
    group_id TEXT PRIMARY KEY,
    firing TEXT NOT NULL,
    root_id INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
"""

CLAIM = """
UPDATE notifications
SET state = 'processing', owner = :owner, lease_until = :lease_until, attempts = attempts + 1
WHERE id = (
    SELECT n.id FROM notifications n
    WHERE ((n.state = 'pending' AND n.next_attempt_at <= :now)
           OR (n.state = 'processing' AND n.lease_until < :now))
      AND NOT EXISTS (
          SELECT 1 FROM notifications e
          WHERE e.group_id = n.group_id AND e.id < n.id AND e.state IN ('pending', 'processing'))
    ORDER BY n.id LIMIT 1)
RETURNING id, group_id, payload, attempts, enrichment
"""


def sqlite_path(store_url: str) -> str:
    """`sqlite:///relative/path.db`, `sqlite:////absolute/path.db` or `sqlite:///:memory:`."""
    prefix = "sqlite:///"
    if not store_url.startswith(prefix):
        raise StoreError(f"unsupported STORE_URL scheme (only sqlite:/// is built in): {store_url}")
    return store_url[len(prefix) :] or ":memory:"


class SQLiteStore:
    """SQLite behind one connection owned by one thread; every call runs on that thread."""

    def __init__(self, path: str, clock: Callable[[], float] = time.time) -> None:
        self._path = path
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    @classmethod
    async def open(cls, store_url: str, clock: Callable[[], float] = time.time) -> SQLiteStore:
        """Open the store. If it is unusable now (read-only or missing disk), the service still
        starts: every call tries again and fails with StoreError (503s, /health 503) until the
        disk is back, so Alertmanager's retries land without a restart."""
        store = cls(sqlite_path(store_url), clock)
        try:
            await store._run(store._connect)
        except StoreError as exc:
            log.error("store %s is unusable, retrying on every use: %s", store_url, exc)
        return store

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._path, isolation_level=None, timeout=10)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.executescript(SCHEMA)
        except sqlite3.Error:
            conn.close()
            raise
        self._conn = conn
        return conn

    async def _run(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"{type(exc).__name__}: {exc}") from exc

    def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> Callable[[], T]:
        """Wrap fn in BEGIN IMMEDIATE ... COMMIT on the store's thread."""

        def run() -> T:
            if self._closed:
                raise sqlite3.OperationalError("store is closed")
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return run

    async def ping(self) -> None:
        """A one-row write: a full or read-only disk fails here, as accepting would."""
        now = self._clock()
        await self._run(
            self._tx(
                lambda c: c.execute(
                    "INSERT INTO heartbeat (id, at) VALUES (1, ?)"
                    " ON CONFLICT (id) DO UPDATE SET at = excluded.at",
                    (now,),
                )
            )
        )

    async def accept(self, key: str, group_id: str, payload: str, window: float) -> Accepted:
        now = self._clock()

        def accept(conn: sqlite3.Connection) -> Accepted:
            row = conn.execute(
                "SELECT id FROM notifications WHERE idem_key = ? AND received_at >= ? LIMIT 1",
                (key, now - window),
            ).fetchone()
            if row is not None:
                return Accepted(id=row[0], duplicate=True)
            cursor = conn.execute(
                "INSERT INTO notifications (idem_key, group_id, payload, received_at)"
                " VALUES (?, ?, ?, ?)",
                (key, group_id, payload, now),
            )
            return Accepted(id=int(cursor.lastrowid or 0), duplicate=False)

        return await self._run(self._tx(accept))

    async def claim(self, owner: str, lease: float) -> StoredNotification | None:
        now = self._clock()

        def claim(conn: sqlite3.Connection) -> StoredNotification | None:
            row = conn.execute(
                CLAIM, {"owner": owner, "now": now, "lease_until": now + lease}
            ).fetchone()
            return None if row is None else StoredNotification(*row)

        return await self._run(self._tx(claim))

    async def _update_owned(self, notification_id: int, owner: str, sql: str, *args: object) -> int:
        def update(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                f"UPDATE notifications SET {sql} WHERE id = ? AND owner = ?",  # noqa: S608 - fixed SQL
                (*args, notification_id, owner),
            )
            return cursor.rowcount

        return await self._run(self._tx(update))

    async def renew(self, notification_id: int, owner: str, lease: float) -> bool:
        changed = await self._update_owned(
            notification_id,
            owner,
            "lease_until = ? , state = 'processing'",
            self._clock() + lease,
        )
        return changed == 1

    async def finish(self, notification_id: int, owner: str) -> None:
        await self._update_owned(
            notification_id,
            owner,
            "state = 'done', owner = NULL, lease_until = 0, finished_at = ?, last_error = NULL",
            self._clock(),
        )

    async def retry_later(self, notification_id: int, owner: str, error: str, delay: float) -> None:
        await self._update_owned(
            notification_id,
            owner,
            "state = 'pending', owner = NULL, lease_until = 0, next_attempt_at = ?, last_error = ?",
            self._clock() + delay,
            error,
        )

    async def give_up(self, notification_id: int, owner: str, error: str) -> None:
        await self._update_owned(
            notification_id,
            owner,
            "state = 'failed', owner = NULL, lease_until = 0, finished_at = ?, last_error = ?",
            self._clock(),
            error,
        )

    async def release(self, notification_id: int, owner: str) -> None:
        """Hand unfinished work back (graceful shutdown): claimable at once, attempt not counted."""
        await self._update_owned(
            notification_id,
            owner,
            "state = 'pending', owner = NULL, lease_until = 0, attempts = MAX(attempts - 1, 0)",
        )

    async def group_state(self, group_id: str) -> GroupState | None:
        row = await self._run(
            self._tx(
                lambda c: c.execute(
                    "SELECT firing, root_id FROM groups WHERE group_id = ?", (group_id,)
                ).fetchone()
            )
        )
        if row is None:
            return None
        return GroupState(firing=frozenset(json.loads(row[0])), root_id=int(row[1]))

    async def save_enrichment(
        self, notification_id: int, enrichment: str, group_id: str, state: GroupState | None
    ) -> None:
        """Save the enrichment and the group's new state (None: the group is over) together."""
        now = self._clock()

        def save(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE notifications SET enrichment = ? WHERE id = ?",
                (enrichment, notification_id),
            )
            if state is None:
                conn.execute("DELETE FROM groups WHERE group_id = ?", (group_id,))
                return
            conn.execute(
                "INSERT INTO groups (group_id, firing, root_id, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (group_id) DO UPDATE SET firing = excluded.firing,"
                " root_id = excluded.root_id, updated_at = excluded.updated_at",
                (group_id, json.dumps(sorted(state.firing)), state.root_id, now),
            )

        await self._run(self._tx(save))

    async def deliveries(self, notification_id: int) -> dict[str, Delivery]:
        rows = await self._run(
            self._tx(
                lambda c: c.execute(
                    "SELECT channel, status, ref, error FROM deliveries WHERE notification_id = ?",
                    (notification_id,),
                ).fetchall()
            )
        )
        return {row[0]: Delivery(*row) for row in rows}

    async def record_delivery(
        self, notification_id: int, channel: str, status: str, ref: str | None, error: str | None
    ) -> None:
        now = self._clock()
        await self._run(
            self._tx(
                lambda c: c.execute(
                    "INSERT INTO deliveries (notification_id, channel, status, ref, error, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (notification_id, channel) DO UPDATE"
                    " SET status = excluded.status, ref = excluded.ref, error = excluded.error,"
                    " updated_at = excluded.updated_at",
                    (notification_id, channel, status, ref, error, now),
                )
            )
        )

    async def message_ref(self, group_id: str, channel: str) -> MessageRef | None:
        row = await self._run(
            self._tx(
                lambda c: c.execute(
                    "SELECT r.ref, n.enrichment FROM message_refs r"
                    " LEFT JOIN notifications n ON n.id = r.notification_id"
                    " WHERE r.group_id = ? AND r.channel = ?",
                    (group_id, channel),
                ).fetchone()
            )
        )
        return None if row is None else MessageRef(ref=str(row[0]), original=row[1])

    async def save_message_ref(
        self, group_id: str, channel: str, ref: str, notification_id: int | None
    ) -> None:
        now = self._clock()
        await self._run(
            self._tx(
                lambda c: c.execute(
                    "INSERT INTO message_refs (group_id, channel, ref, notification_id, updated_at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (group_id, channel) DO UPDATE"
                    " SET ref = excluded.ref, notification_id = excluded.notification_id,"
                    " updated_at = excluded.updated_at",
                    (group_id, channel, ref, notification_id, now),
                )
            )
        )

    async def backlog(self) -> int:
        row = await self._run(
            self._tx(
                lambda c: c.execute(
                    "SELECT COUNT(*) FROM notifications WHERE state IN ('pending', 'processing')"
                ).fetchone()
            )
        )
        return int(row[0])

    async def purge(self, older_than_seconds: float) -> int:
        """Delete finished notifications (with their deliveries) and message refs past retention."""
        cutoff = self._clock() - older_than_seconds

        def purge(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "DELETE FROM notifications WHERE state IN ('done', 'failed') AND finished_at < ?",
                (cutoff,),
            )
            conn.execute("DELETE FROM message_refs WHERE updated_at < ?", (cutoff,))
            conn.execute("DELETE FROM groups WHERE updated_at < ?", (cutoff,))
            return cursor.rowcount

        return await self._run(self._tx(purge))

    async def close(self) -> None:
        def close() -> None:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await self._run(close)
        self._executor.shutdown(wait=True)


async def open_store(store_url: str) -> Store:
    """Build the store named by STORE_URL (only SQLite is built in for now)."""
    return await SQLiteStore.open(store_url)
