"""PostgreSQL's connection layer (app/store/postgres_db.py): the connection settings, errors that
say why, the schema migrated once per process, and the connections kept for the webhook."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from app.store import StoreError, postgres_db
from app.store.postgres_db import (
    CONNECTION_DEFAULTS,
    DIAGNOSE_EVERY_SECONDS,
    LISTEN_RETRY_SECONDS,
    RESERVED,
    SESSION_OPTIONS,
    Conn,
    Database,
    connection_info,
)
from app.store.postgres_schema import SCHEMA_VERSION
from tests.pgserver import PostgresServer, free_port


def test_what_the_url_does_not_say_gets_fail_fast_defaults_and_the_session_options() -> None:
    params = conninfo_to_dict(connection_info("postgresql://enricher:s3cret@db.example:5433/al"))
    assert {key: params[key] for key in CONNECTION_DEFAULTS} == CONNECTION_DEFAULTS
    assert params["options"] == SESSION_OPTIONS
    assert [params[key] for key in ("user", "password", "host", "port", "dbname")] == [
        "enricher",
        "s3cret",
        "db.example",
        "5433",
        "al",
    ]


def test_what_the_url_says_wins_and_its_options_come_after_ours() -> None:
    url = (
        "postgresql://db.example/al?connect_timeout=30&application_name=mine"
        "&options=-c%20lock_timeout%3D9s"
    )
    params = conninfo_to_dict(connection_info(url))
    assert (params["connect_timeout"], params["application_name"]) == ("30", "mine")
    assert params["keepalives_idle"] == CONNECTION_DEFAULTS["keepalives_idle"]
    assert params["options"] == f"{SESSION_OPTIONS} -c lock_timeout=9s"


def test_a_url_that_is_not_one_is_refused_without_being_quoted() -> None:
    with pytest.raises(StoreError) as caught:
        connection_info("postgresql://enricher:s3cret@db.example/al?no_such_option=1")
    assert str(caught.value) == "STORE_URL is not a valid postgresql:// URL"


@asynccontextmanager
async def opened(url: str, pool_size: int = 2, wait_seconds: float = 2) -> AsyncIterator[Database]:
    """A Database opened on `url`, closed after."""
    db = Database(url, pool_size=pool_size, wait_seconds=wait_seconds)
    await db.open()
    try:
        yield db
    finally:
        await db.close()


async def run_once(db: Database, sql: str) -> Any:
    async def fetch(conn: Conn) -> Any:
        row = await (await conn.execute(sql)).fetchone()
        return row[0] if row else None

    return await db.run(fetch)


async def test_every_session_carries_the_lock_and_idle_limits_and_the_urls_own_options(
    postgres_url: str,
) -> None:
    async with opened(f"{postgres_url}?options=-c%20lock_timeout%3D9s") as db:
        assert await run_once(db, "SHOW lock_timeout") == "9s"
        assert await run_once(db, "SHOW idle_in_transaction_session_timeout") == "10s"
        assert await run_once(db, "SHOW application_name") == "alert-enricher"


async def test_the_schema_is_checked_once_per_process_whether_created_or_found(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked: list[int] = []
    original = Database._schema_version

    async def counted(conn: Conn) -> int | None:
        looked.append(1)
        return await original(conn)

    monkeypatch.setattr(Database, "_schema_version", staticmethod(counted))
    for first_or_second in ("creates the schema", "finds it current"):
        looked.clear()
        async with opened(postgres_url) as db:
            for _ in range(3):
                assert await run_once(db, "SELECT 1") == 1
        assert looked == [1], f"the process that {first_or_second} checked {len(looked)} times"


async def test_a_database_of_a_newer_release_is_refused_saying_so(postgres_url: str) -> None:
    async with opened(postgres_url) as db:
        await run_once(db, "SELECT 1")  # migrated
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE alert_enricher_meta SET value = %s WHERE key = 'schema_version'",
            (str(SCHEMA_VERSION + 1),),
        )
    async with opened(postgres_url) as newer:
        with pytest.raises(StoreError) as caught:
            await run_once(newer, "SELECT 1")
    assert str(caught.value) == (
        f"the database holds schema version {SCHEMA_VERSION + 1}, newer than this release's"
        f" {SCHEMA_VERSION}: upgrade alert-enricher"
    )


async def test_a_failing_statement_is_a_store_error_naming_what_failed(postgres_url: str) -> None:
    async with opened(postgres_url) as db:
        with pytest.raises(StoreError) as caught:
            await run_once(db, "SELECT * FROM nowhere")
    assert str(caught.value).startswith(
        'PostgreSQL: UndefinedTable: relation "nowhere" does not exist'
    )


async def test_no_connection_says_why_and_asks_the_server_at_most_every_few_seconds(
    postgres_url: str,
) -> None:
    async with opened(f"postgresql://postgres@127.0.0.1:{free_port()}/x", 2, 0.5) as db:
        with pytest.raises(StoreError) as refused:
            await run_once(db, "SELECT 1")
        first_line = "PostgreSQL: no connection within 0.5s: cannot connect: connection failed: "
        assert str(refused.value).startswith(first_line)
        assert "\n" not in str(refused.value)
        # The server is reachable now for a direct connection, not yet asked again: same reason.
        db._conninfo = connection_info(postgres_url)
        with pytest.raises(StoreError) as again:
            await run_once(db, "SELECT 1")
        assert str(again.value) == str(refused.value)
        db._diagnosed_at -= DIAGNOSE_EVERY_SECONDS  # a while later: asked again
        with pytest.raises(StoreError) as later:
            await run_once(db, "SELECT 1")
        assert str(later.value) == (
            "PostgreSQL: no connection within 0.5s:"
            " no connection free in the pool (STORE_POOL_SIZE)"
        )


async def test_an_error_without_text_is_named_by_its_type(monkeypatch: pytest.MonkeyPatch) -> None:
    async def unreachable(*args: object, **kwargs: object) -> psycopg.AsyncConnection[Any]:
        raise OSError()

    monkeypatch.setattr(psycopg.AsyncConnection, "connect", unreachable)
    async with opened("postgresql://postgres@127.0.0.1:1/x", wait_seconds=0.3) as db:
        with pytest.raises(StoreError) as caught:
            await run_once(db, "SELECT 1")
    assert str(caught.value) == "PostgreSQL: no connection within 0.3s: cannot connect: OSError"


async def test_workers_share_all_but_the_reserved_connections_and_wait_for_one(
    postgres_url: str,
) -> None:
    inside: list[str] = []
    release = asyncio.Event()

    async def hold(db: Database, name: str) -> None:
        async def work(conn: Conn) -> None:
            inside.append(name)
            await release.wait()

        await db.run(work)

    async with opened(postgres_url, pool_size=RESERVED + 1, wait_seconds=5) as db:
        try:
            await run_once(db, "SELECT 1")  # migrated
            workers = [asyncio.create_task(hold(db, f"worker-{i}")) for i in range(2)]
            async with asyncio.timeout(5):
                while not inside:
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)  # time enough for the second to get in, if it could
            assert len(inside) == 1, "one connection left to the workers"
            reserved = await db.run(lambda conn: asyncio.sleep(0, "reserved"), reserved=True)
            assert reserved == "reserved"
            release.set()
            await asyncio.gather(*workers)
            assert sorted(inside) == ["worker-0", "worker-1"]
        finally:
            release.set()


class Stop(Exception):
    """Ends a listener's retry loop in a test."""


async def test_a_listener_that_cannot_connect_backs_off_to_five_seconds_and_warns_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        if len(delays) == 8:
            raise Stop

    async def refused(*args: object, **kwargs: object) -> psycopg.AsyncConnection[Any]:
        raise OSError("connection refused")

    db = Database("postgresql://postgres@127.0.0.1:1/x", pool_size=2, wait_seconds=1)
    monkeypatch.setattr(psycopg.AsyncConnection, "connect", refused)
    monkeypatch.setattr(postgres_db, "asyncio", SimpleNamespace(sleep=sleep))
    connected: list[int] = []
    with pytest.raises(Stop):
        await db.listen({"channel": lambda payload: None}, lambda: connected.append(1))
    assert delays == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert connected == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == ["not listening for new work (polling meanwhile): connection refused"]


async def test_a_listener_hears_each_channel_and_listens_again_after_a_restart(
    stoppable_postgres: tuple[PostgresServer, str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, url = stoppable_postgres
    caplog.set_level(logging.INFO, logger="app.store.postgres_db")
    waits: list[float] = []  # the listener's, between attempts
    sleep = asyncio.sleep

    async def noted(delay: float) -> None:
        caller = sys._getframe(1).f_code.co_filename
        if caller.endswith(os.path.join("app", "store", "postgres_db.py")):
            waits.append(delay)
        await sleep(delay)

    monkeypatch.setattr(asyncio, "sleep", noted)
    db = Database(url, pool_size=2, wait_seconds=1)
    heard: list[tuple[str, str]] = []
    connected = asyncio.Event()
    listener = asyncio.create_task(
        db.listen(
            {
                "work": lambda payload: heard.append(("work", payload)),
                "answers": lambda payload: heard.append(("answers", payload)),
            },
            connected.set,
        )
    )

    def notify(channel: str, payload: str) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))

    async def hears(expected: list[tuple[str, str]]) -> None:
        async with asyncio.timeout(5):
            while heard != expected:
                await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(connected.wait(), 5)
        notify("work", "")
        notify("answers", "42")
        await hears([("work", ""), ("answers", "42")])
        connected.clear()
        server.stop()
        await asyncio.sleep(1)  # a few failed attempts
        server.start()
        await asyncio.wait_for(connected.wait(), LISTEN_RETRY_SECONDS[1] + 5)
        # Listening had succeeded: the first retry after the restart comes at the shortest wait.
        assert waits[0] == LISTEN_RETRY_SECONDS[0] and waits == sorted(waits)
        notify("answers", "43")
        await hears([("work", ""), ("answers", "42"), ("answers", "43")])
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
    said = [r.getMessage() for r in caplog.records if r.name == "app.store.postgres_db"]
    assert [m for m in said if m.startswith("not listening")] == [said[0]], "warned once"
    assert said[-1] == "listening for new work again"


async def test_a_statement_that_hangs_is_cut_at_twice_the_wait(postgres_url: str) -> None:
    async with opened(postgres_url, wait_seconds=0.5) as db:
        await run_once(db, "SELECT 1")  # migrated
        started = time.monotonic()
        with pytest.raises(StoreError) as caught:
            await run_once(db, "SELECT pg_sleep(5)")
        elapsed = time.monotonic() - started
    assert str(caught.value) == "PostgreSQL did not answer within 1s"
    assert 0.9 <= elapsed < 1.4


async def test_a_server_that_never_answers_is_diagnosed_within_the_wait() -> None:
    """A host that accepts and then says nothing (a hung server, a black-holing proxy): the
    direct attempt that says why gives up after the wait too, not after libpq's own 5 s."""

    clients: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        clients.append(writer)
        await reader.read()  # never a word back

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with opened(f"postgresql://postgres@127.0.0.1:{port}/x", wait_seconds=0.5) as db:
            started = time.monotonic()
            with pytest.raises(StoreError, match=r"no connection within 0\.5s: cannot connect"):
                await run_once(db, "SELECT 1")
            assert time.monotonic() - started < 2.5
    finally:
        for writer in clients:
            writer.close()
        server.close()
        await server.wait_closed()
