"""Connections to PostgreSQL for the store: the pool, transactions bounded in time whose failures
are StoreError (saying why), the schema migration at first use, and the LISTEN loop.

psycopg 3 with psycopg_pool: an async driver with a pool that checks a connection before lending it
and reconnects by itself, so the service rides out a database restart without one of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from app.store.base import StoreError
from app.store.postgres_schema import MIGRATE_LOCK, SCHEMA, SCHEMA_VERSION

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
# Server-side: a replica that stops or dies inside a transaction (a paused VM, a partition) must not
# hold its row and advisory locks past its lease, and nothing waits on a lock for long. Every
# statement is planned for its own parameters and the table as it is now: psycopg prepares a
# statement after 5 runs, and the generic plan PostgreSQL then caches for the claim (made while the
# table was small, or with `now()` unknown) scanned the whole backlog, 0.9 s a claim at 3,000
# notifications pending instead of under 1 ms.
SESSION_OPTIONS = (
    "-c idle_in_transaction_session_timeout=10s -c lock_timeout=3s"
    " -c plan_cache_mode=force_custom_plan"
    " -c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3"
)
LISTEN_RETRY_SECONDS = (0.25, 5.0)
DIAGNOSE_EVERY_SECONDS = 5.0
RESERVED = 2  # pooled connections the workers leave to the webhook, /health and lease renewals


def connection_info(store_url: str) -> str:
    """libpq connection info for STORE_URL, with CONNECTION_DEFAULTS where the URL says nothing."""
    try:
        params = conninfo_to_dict(store_url)
    except psycopg.ProgrammingError:  # its text can quote the URL, password and all
        raise StoreError("STORE_URL is not a valid postgresql:// URL") from None
    for key, value in CONNECTION_DEFAULTS.items():
        params.setdefault(key, value)
    # The URL's own options come after ours, so they win where both set something.
    params["options"] = f"{SESSION_OPTIONS} {params.get('options') or ''}".strip()
    return make_conninfo("", **params)


class Database:
    """A pool of connections to one database, opened without waiting for it to be reachable."""

    def __init__(self, store_url: str, pool_size: int, wait_seconds: float) -> None:
        self._conninfo = connection_info(store_url)
        self._timeout = wait_seconds
        self._pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=pool_size,
            open=False,
            timeout=wait_seconds,
            kwargs={"autocommit": True},
            # A check (an empty query) before lending: one more round trip per transaction, but a
            # connection broken by a restart or failover is replaced here, never failing a write
            # made after a message was sent (which would lead to that message being sent again).
            check=AsyncConnectionPool.check_connection,
            # A reconnection attempt backs off (1 s, 2 s, 4 s ...) until this; the next request
            # then starts a fresh one, so the pool is back within seconds of the database.
            reconnect_timeout=wait_seconds,
            name="alert-enricher",
        )
        # Workers queue here for the rest, so an accept never waits behind them for a connection.
        self._work_slots = asyncio.Semaphore(max(1, pool_size - RESERVED))
        self._migrated = False
        self._migrating = asyncio.Lock()
        self._diagnosed_at = -DIAGNOSE_EVERY_SECONDS
        self._diagnosis = "the database did not answer"

    async def open(self) -> None:
        await self._pool.open(wait=False)

    async def close(self) -> None:
        await self._pool.close()

    async def run(
        self, fn: Callable[[Conn], Awaitable[T]], *, reserved: bool = False, single: bool = False
    ) -> T:
        """fn in one transaction on a pooled connection, bounded in time; StoreError on failure.
        Only `reserved` calls (the webhook's, /health's, renewals) may use the RESERVED connections;
        the others first wait for one of the rest. `single`: fn runs one statement, which is a
        transaction of its own (autocommit), so no BEGIN and COMMIT round trips around it."""
        if reserved:
            return await self._transaction(fn, single)
        async with self._work_slots:
            return await self._transaction(fn, single)

    async def _transaction(self, fn: Callable[[Conn], Awaitable[T]], single: bool) -> T:
        try:
            async with asyncio.timeout(self._timeout * 2):
                if not self._migrated:
                    await self._migrate()
                async with self._pool.connection() as conn:
                    if single:
                        return await fn(conn)
                    async with conn.transaction():
                        return await fn(conn)
        except PoolTimeout as exc:
            raise StoreError(f"PostgreSQL: {await self._why_no_connection()}") from exc
        except TimeoutError as exc:  # before OSError, of which it is a subclass
            raise StoreError(f"PostgreSQL did not answer within {self._timeout * 2:g}s") from exc
        except (psycopg.Error, OSError) as exc:
            raise StoreError(f"PostgreSQL: {type(exc).__name__}: {exc}".strip()) from exc

    async def _migrate(self) -> None:
        """Create or upgrade the schema once per process; replicas starting together take turns
        (an advisory lock), and each finds the work of the first one done."""
        async with self._migrating:
            if self._migrated:
                return
            async with self._pool.connection() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (MIGRATE_LOCK,))
                version = await self._schema_version(conn)
                if version is not None and version > SCHEMA_VERSION:
                    raise StoreError(
                        f"the database holds schema version {version}, newer than this release's"
                        f" {SCHEMA_VERSION}: upgrade alert-enricher"
                    )
                if version == SCHEMA_VERSION:  # no DDL: it would lock the tables workers use
                    self._migrated = True
                    return
                await conn.execute(SCHEMA)
                await conn.execute(
                    "INSERT INTO alert_enricher_meta (key, value) VALUES ('schema_version', %s)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(SCHEMA_VERSION),),
                )
            self._migrated = True

    @staticmethod
    async def _schema_version(conn: Conn) -> int | None:
        """The schema's version, None in an empty database."""
        cursor = await conn.execute("SELECT to_regclass('alert_enricher_meta') IS NOT NULL")
        exists = await cursor.fetchone()
        if not (exists and exists[0]):
            return None
        cursor = await conn.execute(
            "SELECT value FROM alert_enricher_meta WHERE key = 'schema_version'"
        )
        row = await cursor.fetchone()
        return int(row[0]) if row else None

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

    async def listen(
        self, handlers: Mapping[str, Callable[[str], None]], connected: Callable[[], None]
    ) -> None:
        """LISTEN on each channel of `handlers` on a connection of its own and call the channel's
        handler with each notification's payload; reconnect after a failure, and call
        `connected` each time it listens (again), for what was missed meanwhile."""
        delay = LISTEN_RETRY_SECONDS[0]
        failing = False
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
                async with conn:
                    for channel in handlers:
                        await conn.execute(f"LISTEN {channel}")
                    if failing:
                        log.info("listening for new work again")
                    failing, delay = False, LISTEN_RETRY_SECONDS[0]
                    connected()
                    async for note in conn.notifies():
                        handlers[note.channel](note.payload)
            except (psycopg.Error, OSError) as exc:
                if not failing:
                    log.warning("not listening for new work (polling meanwhile): %s", exc)
                failing = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, LISTEN_RETRY_SECONDS[1])
