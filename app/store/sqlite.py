"""The SQLite backend: one connection owned by one thread, WAL with synchronous=FULL, and
concurrent calls committed together (group_commit.py).

SQLite is the embedded, single-host store. Lease and retry times are read from the machine's
monotonic clock (seconds since boot, the same for every process on the host, never jumping with
the wall clock); the boot they belong to is stored beside them, and after a reboot every lease
has run out, since no process that held one is still alive.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from app.incident import Incident, Transition
from app.priority import REST, priority
from app.store.base import (
    Accepted,
    Claim,
    LeaseLostError,
    QueuedDiagnosis,
    StoredNotification,
    StoreError,
    claimed,
    ignore_answer,
    open_incident_from,
)
from app.store.group_commit import GroupCommit, WriterLock
from app.store.sqlite_admin import SQLiteAdmin
from app.store.sqlite_deliveries import SQLiteDeliveries
from app.store.sqlite_diagnoses import SQLiteDiagnoses
from app.store.sqlite_history import SQLiteHistory
from app.store.sqlite_roles import SQLiteRoles
from app.store.sqlite_schema import (
    CLAIM,
    FINISH,
    GIVE_UP,
    HELD,
    OLDEST_OPEN,
    RELEASE,
    RETRY,
    SAVE_FIRING,
    boot_id,
    migrate,
)
from app.store.urls import sqlite_path

T = TypeVar("T")
Params = Sequence[object] | Mapping[str, object]
log = logging.getLogger(__name__)


class SQLiteStore(SQLiteDiagnoses, SQLiteDeliveries, SQLiteAdmin, SQLiteHistory, SQLiteRoles):
    """SQLite behind one connection owned by one thread; every call runs on that thread."""

    def __init__(
        self,
        path: str,
        clock: Callable[[], float] = time.time,
        lease_clock: Callable[[], float] = time.monotonic,
        boot: str | None = None,
    ) -> None:
        self._path = path
        self._clock = clock  # wall time: dedup window, retention
        self._lease_clock = lease_clock  # forwards only: leases and retry times
        self._boot = boot or boot_id()
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        lock = WriterLock(f"{path}-writer") if path != ":memory:" else None
        self._thread = GroupCommit(self._connect, lock=lock)

    @classmethod
    async def open(
        cls,
        store_url: str,
        clock: Callable[[], float] = time.time,
        lease_clock: Callable[[], float] = time.monotonic,
        boot: str | None = None,
    ) -> SQLiteStore:
        """Open the store. If it is unusable now (read-only or missing disk), the service still
        starts: every call tries again and fails with StoreError (503s, /health 503) until the
        disk is back, so Alertmanager's retries land without a restart."""
        store = cls(sqlite_path(store_url), clock, lease_clock, boot)
        try:
            await store._call(store._connect)
        except StoreError as exc:
            log.error("store %s is unusable, retrying on every use: %s", store_url, exc)
        return store

    def _connect(self) -> sqlite3.Connection:
        if self._closed:
            raise sqlite3.OperationalError("store is closed")
        if self._conn is not None:
            return self._conn
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._path, isolation_level=None, timeout=10)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("BEGIN IMMEDIATE")
            migrate(conn, self._boot)
            conn.execute("COMMIT")
        except sqlite3.Error:
            conn.close()
            raise
        self._conn = conn
        return conn

    async def _call(self, fn: Callable[[], T]) -> T:
        """fn() on the store's thread, outside any transaction."""
        try:
            return await self._thread.call(fn)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"{type(exc).__name__}: {exc}") from exc

    async def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """fn(connection) in a transaction on the store's thread, committed with whatever other
        work is waiting (group_commit.py); durable when this returns."""
        try:
            return await self._thread.run(fn)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"{type(exc).__name__}: {exc}") from exc

    async def _execute(self, sql: str, params: Params = ()) -> int:
        """One statement; the number of rows it changed."""
        return await self._tx(lambda c: c.execute(sql, params).rowcount)

    async def _fetch(self, sql: str, params: Params = ()) -> list[Any]:
        return await self._tx(lambda c: c.execute(sql, params).fetchall())

    async def _held(self, claim: Claim, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run fn in one transaction only while `claim` still holds its notification."""

        def run(conn: sqlite3.Connection) -> T:
            held = conn.execute(
                f"SELECT 1 FROM notifications WHERE {HELD}",  # noqa: S608 - fixed SQL
                (claim.notification_id, claim.token),
            ).fetchone()
            if held is None:
                raise LeaseLostError(f"notification {claim.notification_id}: claim taken over")
            return fn(conn)

        return await self._tx(run)

    async def ping(self) -> None:
        """A one-row write: a full or read-only disk fails here, as accepting would."""
        await self._execute(
            "INSERT INTO heartbeat (id, at) VALUES (1, ?)"
            " ON CONFLICT (id) DO UPDATE SET at = excluded.at",
            (self._clock(),),
        )

    async def accept(
        self, key: str, group_id: str, payload: str, window: float, rank: int = REST
    ) -> Accepted:
        now = self._clock()

        def accept(conn: sqlite3.Connection) -> Accepted:
            row = conn.execute(
                "SELECT id FROM notifications WHERE idem_key = ? AND received_at >= ? LIMIT 1",
                (key, now - window),
            ).fetchone()
            if row is not None:
                return Accepted(id=row[0], duplicate=True)
            cursor = conn.execute(
                "INSERT INTO notifications"
                " (idem_key, group_id, payload, received_at, rank, priority)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (key, group_id, payload, now, rank, priority(rank, now)),
            )
            return Accepted(id=int(cursor.lastrowid or 0), duplicate=False)

        return await self._tx(accept)

    async def claim(self, owner: str, lease: float) -> StoredNotification | None:
        now = self._lease_clock()
        params = {
            "owner": owner,
            "now": now,
            "lease_until": now + lease,
            "wall": self._clock(),
        }

        def claim(conn: sqlite3.Connection) -> StoredNotification | None:
            row = conn.execute(CLAIM, params).fetchone()
            return None if row is None else claimed(row, owner)

        return await self._tx(claim)

    async def _update_held(self, claim: Claim, sql: str, *args: object) -> None:
        changed = await self._execute(
            f"UPDATE notifications SET {sql} WHERE {HELD}",  # noqa: S608 - fixed SQL
            (*args, claim.notification_id, claim.token),
        )
        if changed != 1:
            raise LeaseLostError(f"notification {claim.notification_id}: claim taken over")

    async def renew(self, claim: Claim, lease: float) -> bool:
        now = self._lease_clock()
        changed = await self._execute(
            f"UPDATE notifications SET lease_until = ? WHERE {HELD} AND lease_until >= ?",  # noqa: S608
            (now + lease, claim.notification_id, claim.token, now),
        )
        return changed == 1

    async def finish(self, claim: Claim) -> None:
        await self._update_held(claim, FINISH, self._clock())

    async def retry_later(self, claim: Claim, error: str, delay: float) -> None:
        await self._update_held(claim, RETRY, self._lease_clock() + delay, error)

    async def give_up(self, claim: Claim, error: str) -> None:
        await self._update_held(claim, GIVE_UP, self._clock(), error)

    async def release(self, claim: Claim) -> None:
        """Hand unfinished work back (graceful shutdown): claimable at once, attempt not counted."""
        await self._update_held(claim, RELEASE)

    async def open_incident(self, group_id: str) -> Incident | None:
        rows = await self._fetch(
            "SELECT id, firing FROM incidents WHERE group_id = ? AND ended_at IS NULL", (group_id,)
        )
        return open_incident_from(group_id, rows[0] if rows else None)

    async def save_enrichment(
        self,
        claim: Claim,
        enrichment: str,
        transition: Transition,
        owed: QueuedDiagnosis | None = None,
    ) -> int | None:
        now = self._clock()
        firing = json.dumps(sorted(transition.firing))

        def save(conn: sqlite3.Connection) -> int | None:
            incident_id = transition.incident_id
            if transition.opens:
                cursor = conn.execute(
                    "INSERT INTO incidents (group_id, firing, opened_at, updated_at)"
                    " VALUES (?, ?, ?, ?)",
                    (transition.group_id, firing, now, now),
                )
                incident_id = int(cursor.lastrowid or 0)
            elif incident_id is not None:
                conn.execute(
                    "UPDATE incidents SET firing = ?, updated_at = ?, ended_at = ? WHERE id = ?",
                    (firing, now, now if transition.ends else None, incident_id),
                )
            conn.execute(
                "UPDATE notifications SET enrichment = ?, incident_id = ? WHERE id = ?",
                (enrichment, incident_id, claim.notification_id),
            )
            conn.executemany(SAVE_FIRING, ((*f, now) for f in transition.firings))
            if owed is not None:
                self._owe(conn, claim.notification_id, owed)
            return incident_id

        return await self._held(claim, save)

    async def backlog(self) -> int:
        rows = await self._fetch(
            "SELECT COUNT(*) FROM notifications WHERE state IN ('pending', 'processing')"
        )
        return int(rows[0][0])

    async def oldest_backlog_age(self) -> float:
        oldest = (await self._fetch(OLDEST_OPEN))[0][0]
        return 0.0 if oldest is None else max(0.0, self._clock() - oldest)

    async def purge(self, older_than_seconds: float) -> int:
        """Forget incidents that ended, or heard nothing for longer than retention (Alertmanager
        repeats a firing group every repeat_interval), with their thread references; and finished
        notifications past retention, except the first messages that live threads still show."""
        cutoff = self._clock() - older_than_seconds

        def purge(conn: sqlite3.Connection) -> int:
            conn.execute(
                "DELETE FROM incidents WHERE COALESCE(ended_at, updated_at) < ?", (cutoff,)
            )
            cursor = conn.execute(
                "DELETE FROM notifications WHERE state IN ('done', 'failed') AND finished_at < ?"
                " AND id NOT IN (SELECT notification_id FROM incident_refs"
                "                WHERE notification_id IS NOT NULL)",
                (cutoff,),
            )
            conn.execute("DELETE FROM alert_firings WHERE seen_at < ?", (cutoff,))
            return cursor.rowcount

        return await self._tx(purge)

    async def watch(
        self, wake: Callable[[], None], answered: Callable[[int], None] = ignore_answer
    ) -> None:
        """Nothing to listen to: the webhook wakes the workers itself (over the pipeline
        process's pipe when they run there)."""
        await asyncio.Event().wait()

    async def close(self) -> None:
        def close() -> None:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await self._call(close)
        await self._thread.stop()
