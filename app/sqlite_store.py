"""The SQLite backend of the store: one connection, owned by one thread, WAL with synchronous=FULL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from app.store import (
    Accepted,
    Delivery,
    GroupState,
    MessageRef,
    StoredNotification,
    StoreError,
)

T = TypeVar("T")
Params = Sequence[object] | Mapping[str, object]
log = logging.getLogger(__name__)

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


# What a claimed notification's owner may do with it (SET clauses; the owner is checked).
RENEW = "lease_until = ?, state = 'processing'"
FINISH = "state = 'done', owner = NULL, lease_until = 0, finished_at = ?, last_error = NULL"
RETRY = "state = 'pending', owner = NULL, lease_until = 0, next_attempt_at = ?, last_error = ?"
GIVE_UP = "state = 'failed', owner = NULL, lease_until = 0, finished_at = ?, last_error = ?"
RELEASE = "state = 'pending', owner = NULL, lease_until = 0, attempts = MAX(attempts - 1, 0)"


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
                conn.execute("COMMIT")
            except BaseException:
                # COMMIT itself can fail (disk full); never leave a transaction open behind us.
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
            return result

        return run

    async def _execute(self, sql: str, params: Params = ()) -> int:
        """One statement in its own transaction; the number of rows it changed."""
        return await self._run(self._tx(lambda c: c.execute(sql, params).rowcount))

    async def _fetch(self, sql: str, params: Params = ()) -> list[Any]:
        return await self._run(self._tx(lambda c: c.execute(sql, params).fetchall()))

    async def ping(self) -> None:
        """A one-row write: a full or read-only disk fails here, as accepting would."""
        await self._execute(
            "INSERT INTO heartbeat (id, at) VALUES (1, ?)"
            " ON CONFLICT (id) DO UPDATE SET at = excluded.at",
            (self._clock(),),
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
        return await self._execute(
            f"UPDATE notifications SET {sql} WHERE id = ? AND owner = ?",  # noqa: S608 - fixed SQL
            (*args, notification_id, owner),
        )

    async def renew(self, notification_id: int, owner: str, lease: float) -> bool:
        changed = await self._update_owned(notification_id, owner, RENEW, self._clock() + lease)
        return changed == 1

    async def finish(self, notification_id: int, owner: str) -> None:
        await self._update_owned(notification_id, owner, FINISH, self._clock())

    async def retry_later(self, notification_id: int, owner: str, error: str, delay: float) -> None:
        await self._update_owned(notification_id, owner, RETRY, self._clock() + delay, error)

    async def give_up(self, notification_id: int, owner: str, error: str) -> None:
        await self._update_owned(notification_id, owner, GIVE_UP, self._clock(), error)

    async def release(self, notification_id: int, owner: str) -> None:
        """Hand unfinished work back (graceful shutdown): claimable at once, attempt not counted."""
        await self._update_owned(notification_id, owner, RELEASE)

    async def group_state(self, group_id: str) -> GroupState | None:
        rows = await self._fetch(
            "SELECT firing, root_id FROM groups WHERE group_id = ?", (group_id,)
        )
        if not rows:
            return None
        return GroupState(firing=frozenset(json.loads(rows[0][0])), root_id=int(rows[0][1]))

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
        rows = await self._fetch(
            "SELECT channel, status, ref, error FROM deliveries WHERE notification_id = ?",
            (notification_id,),
        )
        return {row[0]: Delivery(*row) for row in rows}

    async def record_delivery(
        self, notification_id: int, channel: str, status: str, ref: str | None, error: str | None
    ) -> None:
        await self._execute(
            "INSERT INTO deliveries (notification_id, channel, status, ref, error, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (notification_id, channel) DO UPDATE"
            " SET status = excluded.status, ref = excluded.ref, error = excluded.error,"
            " updated_at = excluded.updated_at",
            (notification_id, channel, status, ref, error, self._clock()),
        )

    async def message_ref(self, group_id: str, channel: str) -> MessageRef | None:
        rows = await self._fetch(
            "SELECT r.ref, n.enrichment FROM message_refs r"
            " LEFT JOIN notifications n ON n.id = r.notification_id"
            " WHERE r.group_id = ? AND r.channel = ?",
            (group_id, channel),
        )
        return MessageRef(ref=str(rows[0][0]), original=rows[0][1]) if rows else None

    async def save_message_ref(
        self, group_id: str, channel: str, ref: str, notification_id: int | None
    ) -> None:
        await self._execute(
            "INSERT INTO message_refs (group_id, channel, ref, notification_id, updated_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (group_id, channel) DO UPDATE"
            " SET ref = excluded.ref, notification_id = excluded.notification_id,"
            " updated_at = excluded.updated_at",
            (group_id, channel, ref, notification_id, self._clock()),
        )

    async def backlog(self) -> int:
        rows = await self._fetch(
            "SELECT COUNT(*) FROM notifications WHERE state IN ('pending', 'processing')"
        )
        return int(rows[0][0])

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
