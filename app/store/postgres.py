"""The PostgreSQL backend: several replicas share one database, and so every page.

psycopg 3 with psycopg_pool: an async driver with a pool that checks a connection before lending it
and reconnects by itself, so the service rides out a database restart without one of its own.

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

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from app.incident import Incident, Transition
from app.store.base import (
    Accepted,
    Claim,
    Delivery,
    LeaseLostError,
    MessageRef,
    StoredNotification,
    StoreError,
)
from app.store.postgres_schema import (
    CHANNEL,
    CLAIM,
    FINISH,
    GIVE_UP,
    GROUP_LOCK,
    HELD,
    MIGRATE_LOCK,
    NOW,
    PURGE_LOCK,
    RELEASE,
    RENEW,
    RETRY,
    SCHEMA,
    SCHEMA_VERSION,
)

T = TypeVar("T")
Conn = psycopg.AsyncConnection[Any]
log = logging.getLogger(__name__)

# What a URL does not say: fail fast when the server is gone, notice a dead host on an idle socket.
CONNECTION_DEFAULTS = {
    "connect_timeout": "5",
    "application_name": "alert-enricher",
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
}
LISTEN_RETRY_SECONDS = (0.25, 5.0)
DIAGNOSE_EVERY_SECONDS = 5.0


def connection_info(store_url: str) -> str:
    """libpq connection info for STORE_URL, with CONNECTION_DEFAULTS where the URL says nothing."""
    try:
        params = conninfo_to_dict(store_url)
    except psycopg.ProgrammingError as exc:
        raise StoreError(f"STORE_URL is not a valid PostgreSQL URL: {exc}") from None
    for key, value in CONNECTION_DEFAULTS.items():
        params.setdefault(key, value)
    return make_conninfo("", **params)


def text(value: str) -> str:
    """PostgreSQL text cannot hold NUL, which an alert's group key can: map it to U+FFFD."""
    return value.replace("\x00", "\ufffd")


class PostgresStore:
    """The Store on PostgreSQL through a psycopg connection pool."""

    def __init__(
        self,
        store_url: str,
        pool_size: int = 10,
        wait_seconds: float = 2.0,
        skew: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self._conninfo = connection_info(store_url)
        self._timeout = wait_seconds
        self._skew = skew  # seconds added to the database's clock: 0 but in the contract tests
        self._pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=pool_size,
            open=False,
            timeout=wait_seconds,
            kwargs={"autocommit": True},
            check=AsyncConnectionPool.check_connection,
            # A reconnection attempt backs off (1 s, 2 s, 4 s ...) until this; the next request
            # then starts a fresh one, so the pool is back within seconds of the database.
            reconnect_timeout=wait_seconds,
            name="alert-enricher",
        )
        self._migrated = False
        self._migrating = asyncio.Lock()
        self._diagnosed_at = -DIAGNOSE_EVERY_SECONDS
        self._diagnosis = ""

    @classmethod
    async def open(
        cls,
        store_url: str,
        pool_size: int = 10,
        wait_seconds: float = 2.0,
        skew: Callable[[], float] = lambda: 0.0,
    ) -> PostgresStore:
        """Open the pool and migrate. If the database is unreachable now, the service still starts:
        every call tries again and fails with StoreError (503s, /health 503) until it is back."""
        store = cls(store_url, pool_size, wait_seconds, skew)
        await store._pool.open(wait=False)
        try:
            await store.ping()
        except StoreError as exc:
            log.error("the PostgreSQL store is unusable, retrying on every use: %s", exc)
        return store

    async def _migrate(self) -> None:
        """Create or upgrade the schema once per process; replicas starting together take turns
        (an advisory lock), and each finds the work of the first one done."""
        async with self._migrating:
            if self._migrated:
                return
            async with self._pool.connection() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (MIGRATE_LOCK,))
                await conn.execute(SCHEMA)
                cursor = await conn.execute(
                    "SELECT value FROM alert_enricher_meta WHERE key = 'schema_version'"
                )
                row = await cursor.fetchone()
                if row is not None and int(row[0]) > SCHEMA_VERSION:
                    raise StoreError(
                        f"the database holds schema version {row[0]}, newer than this release's"
                        f" {SCHEMA_VERSION}: upgrade alert-enricher"
                    )
                await conn.execute(
                    "INSERT INTO alert_enricher_meta (key, value) VALUES ('schema_version', %s)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(SCHEMA_VERSION),),
                )
            self._migrated = True

    async def _run(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """fn in one transaction on a pooled connection, bounded in time; StoreError on failure."""
        try:
            async with asyncio.timeout(self._timeout * 2):
                if not self._migrated:
                    await self._migrate()
                async with self._pool.connection() as conn, conn.transaction():
                    return await fn(conn)
        except PoolTimeout as exc:
            raise StoreError(f"PostgreSQL: {await self._why_no_connection()}") from exc
        except (psycopg.Error, OSError) as exc:
            raise StoreError(f"PostgreSQL: {type(exc).__name__}: {exc}".strip()) from exc
        except TimeoutError as exc:
            raise StoreError(f"PostgreSQL did not answer within {self._timeout * 2:.0f}s") from exc

    async def _why_no_connection(self) -> str:
        """The pool only says it timed out: one direct attempt (at most every few seconds) says why,
        "connection refused", "password authentication failed" and the like."""
        now = time.monotonic()
        if now - self._diagnosed_at >= DIAGNOSE_EVERY_SECONDS:
            self._diagnosed_at = now
            try:
                async with asyncio.timeout(self._timeout):
                    conn = await psycopg.AsyncConnection.connect(self._conninfo)
                await conn.close()
                self._diagnosis = "no connection free in the pool (STORE_POOL_SIZE)"
            except (psycopg.Error, OSError, TimeoutError) as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                self._diagnosis = f"cannot connect: {reason or type(exc).__name__}"
        return f"no connection within {self._timeout:g}s: {self._diagnosis}"

    def _params(self, **values: object) -> dict[str, object]:
        return {"skew": self._skew(), **values}

    async def _fetch(self, sql: str, params: Mapping[str, object]) -> list[tuple[Any, ...]]:
        async def fetch(conn: Conn) -> list[tuple[Any, ...]]:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchall()

        return await self._run(fetch)

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
        async def update(conn: Conn) -> None:
            cursor = await conn.execute(
                f"UPDATE notifications SET {sql} WHERE {HELD}",
                self._params(id=claim.notification_id, fence=claim.token, **values),
            )
            if cursor.rowcount != 1:
                raise LeaseLostError(f"notification {claim.notification_id}: claim taken over")
            if notify:
                await conn.execute("SELECT pg_notify(%s, '')", (CHANNEL,))

        await self._run(update)

    async def ping(self) -> None:
        """A one-row write: a read-only server (a standby after failover) fails here."""
        await self._run(
            lambda conn: conn.execute(
                f"INSERT INTO heartbeat (id, at) VALUES (1, {NOW})"
                " ON CONFLICT (id) DO UPDATE SET at = excluded.at",
                self._params(),
            )
        )

    async def accept(self, key: str, group_id: str, payload: str, window: float) -> Accepted:
        params = self._params(
            key=key, group=text(group_id), payload=payload, window=window, lock=GROUP_LOCK
        )

        async def accept(conn: Conn) -> Accepted:
            await conn.execute(
                "SELECT pg_advisory_xact_lock(%(lock)s, hashtext(%(group)s))", params
            )
            cursor = await conn.execute(
                "SELECT id FROM notifications WHERE idem_key = %(key)s AND group_id = %(group)s"
                f" AND received_at >= {NOW} - make_interval(secs => %(window)s) LIMIT 1",
                params,
            )
            row = await cursor.fetchone()
            if row is not None:
                return Accepted(id=row[0], duplicate=True)
            cursor = await conn.execute(
                "INSERT INTO notifications (idem_key, group_id, payload, received_at)"
                f" VALUES (%(key)s, %(group)s, %(payload)s, {NOW}) RETURNING id",
                params,
            )
            inserted = await cursor.fetchone()
            await conn.execute("SELECT pg_notify(%s, '')", (CHANNEL,))
            return Accepted(id=int(inserted[0]) if inserted else 0, duplicate=False)

        return await self._run(accept)

    async def claim(self, owner: str, lease: float) -> StoredNotification | None:
        rows = await self._fetch(CLAIM, self._params(owner=owner, lease=lease))
        if not rows:
            return None
        id_, group_id, payload, attempts, enrichment, incident_id, fence = rows[0]
        return StoredNotification(
            id_, group_id, payload, attempts, enrichment, incident_id, Claim(id_, owner, fence)
        )

    async def renew(self, claim: Claim, lease: float) -> bool:
        async def renew(conn: Conn) -> bool:
            cursor = await conn.execute(
                f"UPDATE notifications SET {RENEW} WHERE {HELD} AND lease_until >= {NOW}",
                self._params(id=claim.notification_id, fence=claim.token, lease=lease),
            )
            return cursor.rowcount == 1

        return await self._run(renew)

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
        if not rows:
            return None
        return Incident(id=rows[0][0], group_id=group_id, firing=frozenset(json.loads(rows[0][1])))

    async def save_enrichment(
        self, claim: Claim, enrichment: str, transition: Transition
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
            return incident_id

        return await self._held(claim, save)

    async def deliveries(self, notification_id: int) -> dict[str, Delivery]:
        async def read(conn: Conn) -> dict[str, Delivery]:
            cursor = await conn.execute(
                "SELECT channel, status, ref, error FROM deliveries WHERE notification_id = %s",
                (notification_id,),
            )
            found = {row[0]: Delivery(*row) for row in await cursor.fetchall()}
            cursor = await conn.execute(
                "SELECT channel, step, ref FROM delivery_steps WHERE notification_id = %s",
                (notification_id,),
            )
            for channel, step, ref in await cursor.fetchall():
                delivery = found.setdefault(channel, Delivery(channel, "partial", None, None))
                delivery.steps[step] = ref
            return found

        return await self._run(read)

    async def record_step(self, claim: Claim, channel: str, step: str, ref: str | None) -> None:
        params = self._params(
            id=claim.notification_id, channel=channel, step=step, ref=ref and text(ref)
        )
        await self._held(
            claim,
            lambda conn: conn.execute(
                "INSERT INTO delivery_steps (notification_id, channel, step, ref, done_at)"
                f" VALUES (%(id)s, %(channel)s, %(step)s, %(ref)s, {NOW})"
                " ON CONFLICT (notification_id, channel, step) DO UPDATE"
                " SET ref = excluded.ref, done_at = excluded.done_at",
                params,
            ),
        )

    async def record_delivery(
        self, claim: Claim, channel: str, status: str, ref: str | None, error: str | None
    ) -> None:
        params = self._params(
            id=claim.notification_id,
            channel=channel,
            status=status,
            ref=ref and text(ref),
            error=error and text(error),
        )
        await self._held(
            claim,
            lambda conn: conn.execute(
                "INSERT INTO deliveries (notification_id, channel, status, ref, error, updated_at)"
                f" VALUES (%(id)s, %(channel)s, %(status)s, %(ref)s, %(error)s, {NOW})"
                " ON CONFLICT (notification_id, channel) DO UPDATE"
                " SET status = excluded.status, ref = excluded.ref, error = excluded.error,"
                " updated_at = excluded.updated_at",
                params,
            ),
        )

    async def message_ref(self, incident_id: int, channel: str) -> MessageRef | None:
        rows = await self._fetch(
            "SELECT r.ref, n.enrichment FROM incident_refs r"
            " LEFT JOIN notifications n ON n.id = r.notification_id"
            " WHERE r.incident_id = %(incident)s AND r.channel = %(channel)s",
            {"incident": incident_id, "channel": channel},
        )
        return MessageRef(ref=str(rows[0][0]), original=rows[0][1]) if rows else None

    async def save_message_ref(
        self, claim: Claim, incident_id: int, channel: str, ref: str
    ) -> None:
        params = {
            "incident": incident_id,
            "channel": channel,
            "ref": text(ref),
            "id": claim.notification_id,
        }
        await self._held(
            claim,
            lambda conn: conn.execute(
                "INSERT INTO incident_refs (incident_id, channel, ref, notification_id)"
                " VALUES (%(incident)s, %(channel)s, %(ref)s, %(id)s)"
                " ON CONFLICT (incident_id, channel) DO UPDATE"
                " SET ref = excluded.ref, notification_id = excluded.notification_id",
                params,
            ),
        )

    async def backlog(self) -> int:
        rows = await self._fetch(
            "SELECT count(*) FROM notifications WHERE state IN ('pending', 'processing')", {}
        )
        return int(rows[0][0])

    async def purge(self, older_than_seconds: float) -> int:
        """As SQLiteStore.purge; with several replicas, one purges at a time and the others skip."""
        params = self._params(lock=PURGE_LOCK, retention=older_than_seconds)
        cutoff = f"{NOW} - make_interval(secs => %(retention)s)"

        async def purge(conn: Conn) -> int:
            cursor = await conn.execute("SELECT pg_try_advisory_xact_lock(%(lock)s, 0)", params)
            locked = await cursor.fetchone()
            if not (locked and locked[0]):
                return 0  # another replica is purging right now
            await conn.execute(
                f"DELETE FROM incidents WHERE COALESCE(ended_at, updated_at) < {cutoff}",
                params,
            )
            cursor = await conn.execute(
                "DELETE FROM notifications n WHERE state IN ('done', 'failed')"
                f" AND finished_at < {cutoff} AND NOT EXISTS"
                " (SELECT 1 FROM incident_refs r WHERE r.notification_id = n.id)",
                params,
            )
            return cursor.rowcount

        return await self._run(purge)

    async def watch(self, wake: Callable[[], None]) -> None:
        """LISTEN for commits that make work claimable, on every replica, and call `wake` for
        each; reconnect after a failure, and wake once then, for what was missed meanwhile."""
        delay = LISTEN_RETRY_SECONDS[0]
        failing = False
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    if failing:
                        log.info("listening for new work again")
                    failing, delay = False, LISTEN_RETRY_SECONDS[0]
                    wake()
                    async for _ in conn.notifies():
                        wake()
            except (psycopg.Error, OSError) as exc:
                if not failing:
                    log.warning("not listening for new work (polling meanwhile): %s", exc)
                failing = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, LISTEN_RETRY_SECONDS[1])

    async def close(self) -> None:
        await self._pool.close()
