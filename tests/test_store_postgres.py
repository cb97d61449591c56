"""What only the PostgreSQL backend has: replicas sharing one database, its wake-ups, its outages.

Each test gets a fresh database on the session's throwaway server (tests/pgserver.py); the contract
every backend keeps is in test_store.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Any

import psycopg
import pytest

from app.config import Settings
from app.logs import configure_logging
from app.store import PostgresStore, StoreError, open_store, shown_url
from app.store.postgres_db import RESERVED, Conn
from app.store.postgres_schema import PURGE_LOCK, SCHEMA_VERSION
from tests.pgserver import PostgresServer, free_port


async def replicas(url: str, count: int) -> list[PostgresStore]:
    return list(await asyncio.gather(*(PostgresStore.open(url, pool_size=4) for _ in range(count))))


async def close(stores: list[PostgresStore]) -> None:
    await asyncio.gather(*(s.close() for s in stores))


async def test_replicas_starting_at_once_on_an_empty_database_create_the_schema_once(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    stores = await replicas(postgres_url, 6)
    accepted = await asyncio.gather(
        *(s.accept(f"k{i}", "g", "{}", 600) for i, s in enumerate(stores))
    )
    await close(stores)
    assert len({a.id for a in accepted}) == 6
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    with psycopg.connect(postgres_url) as conn:
        version = conn.execute(
            "SELECT value FROM alert_enricher_meta WHERE key = 'schema_version'"
        ).fetchone()
    assert version == (str(SCHEMA_VERSION),)


async def test_replicas_claiming_side_by_side_take_each_notification_once_in_group_order(
    postgres_url: str,
) -> None:
    stores = await replicas(postgres_url, 4)
    for i in range(60):
        await stores[i % 4].accept(f"k{i}", f"group-{i % 6}", str(i), 600)
    taken: dict[str, list[int]] = defaultdict(list)

    async def work(store: PostgresStore, owner: str) -> None:
        while (stored := await store.claim(owner, 30)) is not None or await store.backlog():
            if stored is None:
                await asyncio.sleep(0.005)
                continue
            taken[stored.group_id].append(int(stored.payload))
            await store.finish(stored.claim)

    await asyncio.gather(*(work(s, f"w{i}-{j}") for i, s in enumerate(stores) for j in range(3)))
    await close(stores)
    assert sorted(n for group in taken.values() for n in group) == list(range(60))
    for group, numbers in taken.items():
        assert numbers == sorted(numbers), f"{group} was processed out of order"


async def test_a_commit_on_one_replica_wakes_the_others_within_100_ms(postgres_url: str) -> None:
    accepting, *listening = await replicas(postgres_url, 3)
    woken = [asyncio.Event() for _ in listening]
    watchers = [asyncio.create_task(s.watch(e.set)) for s, e in zip(listening, woken, strict=True)]
    await asyncio.gather(*(e.wait() for e in woken))  # each wakes once when it starts listening
    for event in woken:
        event.clear()
    started = time.perf_counter()
    await accepting.accept("k", "g", "{}", 600)
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in woken)), 1)
    elapsed = time.perf_counter() - started
    for watcher in watchers:
        watcher.cancel()
    await asyncio.gather(*watchers, return_exceptions=True)
    await close([accepting, *listening])
    assert elapsed < 0.1, f"woken after {elapsed * 1000:.0f} ms"


async def test_the_database_going_away_fails_fast_and_the_store_heals_without_reopening(
    stoppable_postgres: tuple[PostgresServer, str],
) -> None:
    server, postgres_url = stoppable_postgres
    store = await PostgresStore.open(postgres_url, pool_size=2, wait_seconds=2)
    accepted = await store.accept("k1", "g", "{}", 600)
    server.stop()
    try:
        started = time.perf_counter()
        with pytest.raises(StoreError):
            await store.accept("k2", "g", "{}", 600)
        with pytest.raises(StoreError):
            await store.ping()
        assert time.perf_counter() - started < 10
    finally:
        server.start()
    await store.ping()
    assert not (await store.accept("k2", "g", "{}", 600)).duplicate
    assert (await store.claim("w", 30)).id == accepted.id, "nothing accepted before is lost"
    await store.close()


async def test_a_store_opened_while_the_database_is_down_starts_and_heals(
    stoppable_postgres: tuple[PostgresServer, str],
) -> None:
    server, postgres_url = stoppable_postgres
    server.stop()
    try:
        store = await PostgresStore.open(postgres_url, pool_size=2, wait_seconds=1)
        with pytest.raises(StoreError, match=r"cannot connect: .*Connection refused"):
            await store.backlog()
    finally:
        server.start()
    assert not (await store.accept("k", "g", "{}", 600)).duplicate
    await store.close()


async def test_the_service_waits_two_seconds_for_a_connection_before_answering_503() -> None:
    """open_store's store, as the service runs it: the webhook's 503 comes within seconds, and
    Alertmanager retries."""
    store = await open_store(f"postgresql://postgres@127.0.0.1:{free_port()}/x", pool_size=2)
    try:
        with pytest.raises(StoreError, match=r"^PostgreSQL: no connection within 2s: "):
            await store.ping()
    finally:
        await store.close()


async def test_one_replica_purges_at_a_time(postgres_url: str) -> None:
    store = await PostgresStore.open(postgres_url, pool_size=2)
    await store.accept("k", "g", "{}", 600)
    held = await store.claim("w", 30)
    await store.finish(held.claim)
    with psycopg.connect(postgres_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s, 0)", (PURGE_LOCK,))  # another replica purging
        assert await store.purge(older_than_seconds=-1) == 0
        other.execute("SELECT pg_advisory_unlock(%s, 0)", (PURGE_LOCK,))
    assert await store.purge(older_than_seconds=-1) == 1
    await store.close()


async def test_a_group_key_with_a_nul_character_is_stored_not_refused(postgres_url: str) -> None:
    store = await PostgresStore.open(postgres_url, pool_size=2)
    group = '{}:{alertname="x\x00y"}'
    first = await store.accept("k", group, "{}", 600)
    assert (await store.accept("k", group, "{}", 600)).duplicate
    held = await store.claim("w", 30)
    await store.retry_later(held.claim, "slack said \x00", 0)
    assert first.id == held.id and await store.open_incident(group) is None
    assert held.group_id == '{}:{alertname="x\ufffdy"}', "NUL shown as the replacement character"
    await store.close()
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute("SELECT last_error FROM notifications WHERE id = %s", (first.id,))
        assert row.fetchone() == ("slack said \ufffd",)


def test_store_url_passwords_never_reach_logs_or_the_console(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = "postgresql://enricher:s3cret-pw@db:5432/e?sslmode=require&password=other-pw"
    shown = shown_url(url)
    assert "s3cret-pw" not in shown and "other-pw" not in shown
    assert shown.startswith("postgresql://enricher:***@db:5432/e?sslmode=require")
    assert shown_url("sqlite:///./data/enricher.db") == "sqlite:///./data/enricher.db"
    settings = Settings(store_url=url, _env_file=None)  # type: ignore[call-arg]
    configure_logging("INFO", "text", settings.secret_values())
    logging.getLogger("test").error("cannot connect to %s", url)
    assert "s3cret-pw" not in capsys.readouterr().err


@pytest.mark.parametrize("password", ["pa?ss#w[rd", "s3cret+pw/x", "plain-secret"])
def test_a_password_with_url_punctuation_is_masked_scrubbed_and_never_crashes_start(
    password: str,
) -> None:
    url = f"postgresql://enricher:{password}@db:5432/e?sslmode=require"
    assert shown_url(url) == "postgresql://enricher:***@db:5432/e?sslmode=require"
    settings = Settings(store_url=url, _env_file=None)  # type: ignore[call-arg]
    assert password in settings.secret_values()


async def test_a_replica_starting_on_a_current_schema_takes_no_table_locks(
    postgres_url: str,
) -> None:
    first = await PostgresStore.open(postgres_url, pool_size=2)
    await first.close()
    with psycopg.connect(postgres_url) as busy:  # a worker's transaction, open on the tables
        busy.execute("LOCK TABLE notifications, incidents IN ROW EXCLUSIVE MODE")
        started = time.perf_counter()
        second = await PostgresStore.open(postgres_url, pool_size=2)
        await second.backlog()
        assert time.perf_counter() - started < 1, "the start waited for the workers' locks"
    await second.close()


async def test_a_database_of_the_release_before_gets_the_one_statement_accept_at_start(
    postgres_url: str,
) -> None:
    first = await PostgresStore.open(postgres_url, pool_size=2)
    kept = await first.accept("k", "g", "{}", 600)
    await first.close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:  # as version 6 left it
        conn.execute("DROP FUNCTION alert_enricher_accept")
        conn.execute("UPDATE alert_enricher_meta SET value = '6' WHERE key = 'schema_version'")
    upgraded = await PostgresStore.open(postgres_url, pool_size=2)
    again = await upgraded.accept("k", "g", "{}", 600)
    fresh = await upgraded.accept("k2", "g", "{}", 600)
    await upgraded.close()
    assert again.duplicate and again.id == kept.id
    assert not fresh.duplicate and fresh.id > kept.id


async def test_sessions_cannot_hold_locks_idle_or_wait_on_them_for_long(postgres_url: str) -> None:
    store = await PostgresStore.open(postgres_url, pool_size=2)

    async def settings(conn: Conn) -> list[tuple[Any, ...]]:
        cursor = await conn.execute(
            "SELECT name, setting, unit FROM pg_settings WHERE name IN"
            " ('idle_in_transaction_session_timeout', 'lock_timeout') ORDER BY name"
        )
        return await cursor.fetchall()

    assert await store._run(settings) == [
        ("idle_in_transaction_session_timeout", "10000", "ms"),
        ("lock_timeout", "3000", "ms"),
    ]
    await store.close()


async def test_claims_are_planned_for_the_backlog_of_now_never_from_a_cached_generic_plan(
    postgres_url: str,
) -> None:
    store = await PostgresStore.open(postgres_url, pool_size=1)  # one connection: one session
    for i in range(20):
        await store.accept(f"k{i}", f"g{i}", "{}", 600)
    for _ in range(12):  # psycopg prepares a statement after its fifth run
        await store.claim("worker", 30)

    async def plans(conn: Conn) -> list[tuple[Any, ...]]:
        cursor = await conn.execute(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE statement LIKE '%SET state = ''processing''%'"
        )
        return await cursor.fetchall()

    async def mode(conn: Conn) -> list[tuple[Any, ...]]:
        return await (await conn.execute("SHOW plan_cache_mode")).fetchall()

    prepared, setting = await store._run(plans), await store._run(mode)
    await store.close()
    assert setting == [("force_custom_plan",)]
    assert prepared, "the claim was never prepared: nothing checked"
    assert all(generic == 0 and custom >= 5 for generic, custom in prepared), prepared


async def test_a_statement_past_the_time_bound_says_so(postgres_url: str) -> None:
    store = await PostgresStore.open(postgres_url, pool_size=2, wait_seconds=0.5)
    with pytest.raises(StoreError, match="did not answer within 1s"):
        await store._run(lambda conn: conn.execute("SELECT pg_sleep(5)"))
    await store.ping()
    await store.close()


async def test_purge_deletes_a_long_backlog_in_batches(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("app.store.postgres.PURGE_BATCH", 2)
    store = await PostgresStore.open(postgres_url, pool_size=2)
    for i in range(5):
        await store.accept(f"k{i}", f"g{i}", "{}", 600)
        await store.finish((await store.claim("w", 30)).claim)
    assert await store.purge(older_than_seconds=-1) == 5
    await store.close()


@pytest.mark.parametrize("ending", ["finish", "release", "give_up"])
async def test_a_claim_that_ends_wakes_the_other_replicas(postgres_url: str, ending: str) -> None:
    """The group's next notification, or this one again, is claimable: idle replicas must look."""
    working, watching = await replicas(postgres_url, 2)
    await working.accept("k", "g", "{}", 600)
    held = await working.claim("w", 30)
    assert held is not None
    woken = asyncio.Event()
    watcher = asyncio.create_task(watching.watch(woken.set))
    await asyncio.wait_for(woken.wait(), 5)  # once when it starts listening
    woken.clear()
    if ending == "give_up":
        await working.give_up(held.claim, "gone")
    else:
        await getattr(working, ending)(held.claim)
    try:
        await asyncio.wait_for(woken.wait(), 2)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await close([working, watching])


async def test_a_retry_from_the_admin_command_wakes_every_replica(postgres_url: str) -> None:
    """`alert-enricher retry` runs in a process of its own; the service's workers hear of it."""
    admin, watching = await replicas(postgres_url, 2)
    accepted = await admin.accept("k", "g", "{}", 600)
    await admin.give_up((await admin.claim("w", 30)).claim, "slack: 500")
    woken = asyncio.Event()
    watcher = asyncio.create_task(watching.watch(woken.set))
    await asyncio.wait_for(woken.wait(), 5)  # once when it starts listening
    woken.clear()
    try:
        assert await admin.requeue(accepted.id)
        await asyncio.wait_for(woken.wait(), 2)
        woken.clear()
        assert not await admin.requeue(accepted.id)
        await asyncio.sleep(0.3)
        assert not woken.is_set(), "nothing requeued, nobody woken"
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await close([admin, watching])


@pytest.mark.parametrize("page", ["waiting", "gone without it"])
async def test_a_diagnosis_answered_on_one_replica_reaches_a_page_waiting_on_another(
    postgres_url: str, page: str
) -> None:
    """Any replica's lane may answer a page's diagnosis: the page's replica hears of it at once
    (without it the page waited out PAGE_WITHIN_SECONDS); once the page went without it, the
    answer is an edit's, and only the work channel speaks."""
    paging, answering = await replicas(postgres_url, 2)
    answers: list[int] = []
    heard = asyncio.Event()

    def answered(notification_id: int) -> None:
        answers.append(notification_id)
        heard.set()

    woken = asyncio.Event()
    watcher = asyncio.create_task(paging.watch(woken.set, answered))
    await asyncio.wait_for(woken.wait(), 5)  # once when it starts listening
    await paging.accept("k", "g", "{}", 600)
    held = await paging.claim("page-worker", 30)
    assert held is not None
    await paging.queue_diagnosis(held.claim, "[]", 1)
    if page == "gone without it":
        assert await paging.take_diagnosis(held.claim) is None
    job = await answering.claim_diagnosis("lane", 30)
    assert job is not None
    try:
        started = time.perf_counter()
        await answering.answer_diagnosis(job.claim, '"answer"')
        if page == "waiting":
            await asyncio.wait_for(heard.wait(), 2)
            assert time.perf_counter() - started < 0.5
            assert answers == [held.id]
            assert await paging.take_diagnosis(held.claim) == '"answer"'
        else:
            await asyncio.sleep(0.3)  # what a NOTIFY would take, many times over
            assert answers == []
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await close([paging, answering])


async def test_the_webhook_health_and_lease_renewals_never_wait_behind_busy_workers(
    postgres_url: str,
) -> None:
    """Workers get all connections but RESERVED; with theirs all busy (here: stuck on a lock),
    accept, backlog, ping and renew still answer at once."""
    store = await PostgresStore.open(postgres_url, pool_size=RESERVED + 1, wait_seconds=1)
    await store.accept("k", "g", "{}", 600)
    held = await store.claim("w", 30)
    assert held is not None
    with psycopg.connect(postgres_url, autocommit=True) as locker:
        locker.execute("BEGIN")
        locker.execute("LOCK TABLE deliveries IN ACCESS EXCLUSIVE MODE")
        stuck = asyncio.create_task(store.record_delivery(held.claim, "slack", "sent", "r", None))
        while not locker.execute(  # the worker's write holds its connection, waiting on the lock
            "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        ).fetchone():
            await asyncio.sleep(0.01)
        assert not (await store.accept("k2", "g2", "{}", 600)).duplicate
        assert await store.backlog() == 2
        assert await store.llm_backlog() == 0  # /health shows it too
        assert await store.oldest_backlog_age() < 60  # and /metrics
        await store.ping()
        assert await store.renew(held.claim, 30)
        locker.execute("COMMIT")
    await stuck
    await store.close()
