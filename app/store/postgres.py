"""The PostgreSQL backend: several replicas share one database, and so every page.

Connections, transactions, the schema migration and LISTEN are in postgres_db.py; delivery records
and thread references in postgres_deliveries.py; the LLM lane's diagnoses in postgres_diagnoses.py;
this module is the rest of what the Store promises, in SQL:

- Accepting takes a transaction-scoped advisory lock on the alert group, so the dedup check and the
  insert of one group are serialised across replicas, and a group's ids follow its commit order.
- Claims use `FOR UPDATE SKIP LOCKED`; every write a worker makes locks its notification's row and
  checks the fencing token first, so a stalled worker's claim taken over by another replica can
  record, finish and send nothing more.
- Lease, retry and dedup times are the database server's clock, never a replica's.
- A commit that makes work claimable sends `NOTIFY`; every replica LISTENs and wakes its workers
  (polling stays the safety net).
"""

# ruff: noqa: S608 (every statement is fixed text; values travel as query parameters)
from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from app.incident import Incident, Transition
from app.priority import AGING_SECONDS, REST
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
from app.store.postgres_admin import PostgresAdmin
from app.store.postgres_db import Conn, Database
from app.store.postgres_deliveries import PostgresDeliveries
from app.store.postgres_diagnoses import PostgresDiagnoses
from app.store.postgres_history import PostgresHistory
from app.store.postgres_roles import PostgresRoles
from app.store.postgres_schema import (
    ACCEPT,
    ANSWERED_CHANNEL,
    CHANNEL,
    CLAIM,
    FINISH,
    GIVE_UP,
    HEARTBEAT,
    HELD,
    NOW,
    OLDEST_OPEN_AGE,
    PURGE_FIRINGS,
    PURGE_INCIDENTS,
    PURGE_LOCK,
    PURGE_NOTIFICATIONS,
    RELEASE,
    RENEW,
    RETRY,
    SAVE_FIRINGS,
    firing_params,
    text,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

PURGE_BATCH = 5000


class PostgresStore(
    PostgresDeliveries, PostgresDiagnoses, PostgresAdmin, PostgresHistory, PostgresRoles
):
    """The Store on PostgreSQL through a psycopg connection pool."""

    def __init__(
        self, store_url: str, pool_size: int, wait_seconds: float, skew: Callable[[], float]
    ) -> None:  # PostgresStore.open() names the default wait; open_store() the pool size
        self._db = Database(store_url, pool_size, wait_seconds)
        self._skew = skew  # seconds added to the database's clock: 0 but in the contract tests
        self._run = self._db.run

    @classmethod
    async def open(
        cls,
        store_url: str,
        pool_size: int,
        wait_seconds: float = 2.0,
        skew: Callable[[], float] = lambda: 0.0,
    ) -> PostgresStore:
        """Open the pool and migrate. If the database is unreachable now, the service still starts:
        every call tries again and fails with StoreError (503s, /health 503) until it is back."""
        store = cls(store_url, pool_size, wait_seconds, skew)
        await store._db.open()
        try:
            await store.ping()
        except StoreError as exc:
            log.error("the PostgreSQL store is unusable, retrying on every use: %s", exc)
        return store

    def _params(self, **values: object) -> dict[str, object]:
        return {"skew": self._skew(), **values}

    async def _fetch(self, sql: str, params: Mapping[str, object]) -> list[tuple[Any, ...]]:
        """The rows of one statement, a transaction of its own."""

        async def fetch(conn: Conn) -> list[tuple[Any, ...]]:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchall()

        return await self._db.run(fetch, single=True)

    async def _write_held(self, claim: Claim, sql: str, params: Mapping[str, object]) -> None:
        """One write while `claim` still holds its notification, in one statement: `sql` takes
        its rows FROM `held`, the claimed row locked for the statement, so a claim taken over
        writes nothing (LeaseLostError). Two round trips fewer than `_held`'s transaction."""
        held = f"WITH held AS (SELECT id FROM notifications WHERE {HELD} FOR UPDATE) "
        fenced = {**params, "id": claim.notification_id, "fence": claim.token}

        async def write(conn: Conn) -> None:
            cursor = await conn.execute(held + sql, fenced)
            if cursor.rowcount < 1:
                raise LeaseLostError(f"notification {claim.notification_id}: claim taken over")

        await self._db.run(write, single=True)

    async def _held(self, claim: Claim, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """fn in one transaction only while `claim` still holds its notification; the row stays
        locked until the commit, so no takeover can slip in between the check and the write."""

        async def run(conn: Conn) -> T:
            cursor = await conn.execute(
                f"SELECT 1 FROM notifications WHERE {HELD} FOR UPDATE",
                {"id": claim.notification_id, "fence": claim.token},
            )
            if await cursor.fetchone() is None:
                raise LeaseLostError(f"notification {claim.notification_id}: claim taken over")
            return await fn(conn)

        return await self._run(run)

    async def _update_held(self, claim: Claim, sql: str, notify: bool, **values: object) -> None:
        """One statement: the update, and with `notify` the NOTIFY only when it updated."""
        update = f"UPDATE notifications SET {sql} WHERE {HELD} RETURNING id"
        if notify:
            update = f"WITH updated AS ({update}) SELECT pg_notify(%(channel)s, '') FROM updated"
        params = self._params(
            id=claim.notification_id, fence=claim.token, channel=CHANNEL, **values
        )

        async def run(conn: Conn) -> None:
            cursor = await conn.execute(update, params)
            if cursor.rowcount != 1:
                raise LeaseLostError(f"notification {claim.notification_id}: claim taken over")

        await self._db.run(run, single=True)

    async def ping(self) -> None:
        """A one-row write: a read-only server (a standby after failover) fails here."""
        await self._run(
            lambda conn: conn.execute(HEARTBEAT, self._params()), reserved=True, single=True
        )

    async def accept(
        self, key: str, group_id: str, payload: str, window: float, rank: int = REST
    ) -> Accepted:
        params = self._params(
            key=key,
            group=text(group_id),
            payload=payload,
            window=window,
            rank=rank,
            aging=AGING_SECONDS,
        )

        async def accept(conn: Conn) -> list[tuple[Any, ...]]:
            return await (await conn.execute(ACCEPT, params)).fetchall()

        # One statement, so one round trip: the webhook's connection is back in the pool sooner.
        ((accepted_id, duplicate),) = await self._run(accept, reserved=True, single=True)
        return Accepted(id=accepted_id, duplicate=duplicate)

    async def claim(self, owner: str, lease: float) -> StoredNotification | None:
        rows = await self._fetch(CLAIM, self._params(owner=owner, lease=lease))
        return claimed(rows[0], owner) if rows else None

    async def renew(self, claim: Claim, lease: float) -> bool:
        async def renew(conn: Conn) -> bool:
            cursor = await conn.execute(
                f"UPDATE notifications SET {RENEW} WHERE {HELD} AND lease_until >= {NOW}",
                self._params(id=claim.notification_id, fence=claim.token, lease=lease),
            )
            return cursor.rowcount == 1

        # Not behind the other workers: a renewal that queued past the lease would lose it.
        return await self._run(renew, reserved=True, single=True)

    async def finish(self, claim: Claim) -> None:
        await self._update_held(claim, FINISH, notify=True)

    async def retry_later(self, claim: Claim, error: str, delay: float) -> None:
        await self._update_held(claim, RETRY, notify=False, delay=delay, error=text(error))

    async def give_up(self, claim: Claim, error: str) -> None:
        await self._update_held(claim, GIVE_UP, notify=True, error=text(error))

    async def release(self, claim: Claim) -> None:
        """Hand unfinished work back (graceful shutdown): claimable at once by any replica."""
        await self._update_held(claim, RELEASE, notify=True)

    async def open_incident(self, group_id: str) -> Incident | None:
        rows = await self._fetch(
            "SELECT id, firing FROM incidents WHERE group_id = %(group)s AND ended_at IS NULL",
            {"group": text(group_id)},
        )
        return open_incident_from(group_id, rows[0] if rows else None)

    async def save_enrichment(
        self,
        claim: Claim,
        enrichment: str,
        transition: Transition,
        owed: QueuedDiagnosis | None = None,
    ) -> int | None:
        params = self._params(
            group=text(transition.group_id),
            firing=json.dumps(sorted(transition.firing)),
            enrichment=enrichment,
            incident=transition.incident_id,
            ends=transition.ends,
            id=claim.notification_id,
        )

        async def save(conn: Conn) -> int | None:
            incident_id = transition.incident_id
            if transition.opens:
                cursor = await conn.execute(
                    "INSERT INTO incidents (group_id, firing, opened_at, updated_at)"
                    f" VALUES (%(group)s, %(firing)s, {NOW}, {NOW}) RETURNING id",
                    params,
                )
                row = await cursor.fetchone()
                incident_id = int(row[0]) if row else None
            elif incident_id is not None:
                await conn.execute(
                    f"UPDATE incidents SET firing = %(firing)s, updated_at = {NOW},"
                    f" ended_at = CASE WHEN %(ends)s THEN {NOW} END WHERE id = %(incident)s",
                    params,
                )
            await conn.execute(
                "UPDATE notifications SET enrichment = %(enrichment)s, incident_id = %(incident)s"
                " WHERE id = %(id)s",
                {**params, "incident": incident_id},
            )
            if transition.firings:
                await conn.execute(SAVE_FIRINGS, {**params, **firing_params(transition.firings)})
            if owed is not None:
                await self._owe(conn, claim.notification_id, owed)
            return incident_id

        return await self._held(claim, save)

    async def backlog(self) -> int:
        """Pending and in-progress notifications (/health asks: not behind the workers)."""

        async def count(conn: Conn) -> int:
            cursor = await conn.execute(
                "SELECT count(*) FROM notifications WHERE state IN ('pending', 'processing')"
            )
            row = await cursor.fetchone()
            return int(row[0]) if row else 0

        return await self._run(count, reserved=True)

    async def oldest_backlog_age(self) -> float:
        async def age(conn: Conn) -> float:
            cursor = await conn.execute(OLDEST_OPEN_AGE, self._params())
            row = await cursor.fetchone()
            return max(0.0, float(row[0])) if row and row[0] is not None else 0.0

        return await self._run(age, reserved=True, single=True)

    async def purge(self, older_than_seconds: float) -> int:
        """As SQLiteStore.purge, in batches of PURGE_BATCH rows, each its own short transaction
        (a long backlog never outlasts the time bound); with several replicas, one purges at a
        time and the others skip the round."""
        params = self._params(lock=PURGE_LOCK, retention=older_than_seconds, batch=PURGE_BATCH)

        async def batch(conn: Conn) -> tuple[int, int] | None:
            cursor = await conn.execute("SELECT pg_try_advisory_xact_lock(%(lock)s, 0)", params)
            locked = await cursor.fetchone()
            if not (locked and locked[0]):
                return None  # another replica is purging right now
            incidents = await conn.execute(PURGE_INCIDENTS, params)
            firings = await conn.execute(PURGE_FIRINGS, params)
            notifications = await conn.execute(PURGE_NOTIFICATIONS, params)
            return max(incidents.rowcount, firings.rowcount), notifications.rowcount

        purged = 0
        while (counts := await self._run(batch)) is not None:
            purged += counts[1]
            if max(counts) < PURGE_BATCH:
                break
        return purged

    async def watch(
        self, wake: Callable[[], None], answered: Callable[[int], None] = ignore_answer
    ) -> None:
        """Every replica LISTENs for commits that make work claimable, and wakes its workers; and
        for the answers of diagnoses pages may wait for, which it passes to `answered`."""

        def answer(payload: str) -> None:
            if payload.isdigit():
                answered(int(payload))

        await self._db.listen({CHANNEL: lambda _: wake(), ANSWERED_CHANNEL: answer}, wake)

    async def close(self) -> None:
        await self._db.close()
