"""The Store contract, one suite run against every backend (SQLite and PostgreSQL).

Time passes through `later(store, seconds)`: SQLite's injected clocks move, PostgreSQL's clock is
the server's own, shifted by the store's skew. What only one backend has is in test_store_sqlite.py
and test_store_postgres.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from app.incident import Firing, Transition, firings_of
from app.models import Alert
from app.store import DailySpend, LeaseLostError, PostgresStore, SQLiteStore, Store
from app.store.history import AlertEpisode, IncidentHistory, last_diagnosis


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Backend:
    name: str
    url: str

    async def open(self) -> Store:
        if self.name == "sqlite":
            return await SQLiteStore.open(self.url)
        return await PostgresStore.open(self.url, pool_size=4)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", f"sqlite:///{tmp_path}/s.db")
    return Backend("postgresql", request.getfixturevalue("postgres_url"))


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Any]:
    """A store whose clocks the test moves: `store.clock` (wall) and `store.lease` (leases)."""
    s: Any
    if backend.name == "sqlite":
        wall, lease = Clock(), Clock(500.0)
        s = await SQLiteStore.open(backend.url, wall, lease, boot="boot-1")
        s.clock, s.lease = wall, lease
    else:  # one clock, the server's, moved by the skew
        skew = Clock(0.0)
        s = await PostgresStore.open(backend.url, pool_size=4, skew=skew)
        s.clock = s.lease = skew
    yield s
    await s.close()


def opening(group: str, firing: set[str]) -> Transition:
    return Transition(kind="new", group_id=group, incident_id=None, firing=frozenset(firing))


async def test_accepted_notification_survives_reopening(backend: Backend) -> None:
    first = await backend.open()
    accepted = await first.accept("k", "g", '{"x": 1}', window=600)
    await first.close()
    second = await backend.open()
    claimed = await second.claim("w", lease=30)
    await second.close()
    assert claimed is not None and claimed.id == accepted.id and claimed.payload == '{"x": 1}'


async def test_same_key_within_window_is_a_duplicate(store) -> None:
    first = await store.accept("k", "g", "{}", window=600)
    again = await store.accept("k", "g", "{}", window=600)
    assert not first.duplicate and again.duplicate and again.id == first.id
    store.clock.now += 601
    assert not (await store.accept("k", "g", "{}", window=600)).duplicate


async def test_concurrent_accepts_of_the_same_notification_store_it_once(backend: Backend) -> None:
    replicas = [await backend.open() for _ in range(4)]
    results = await asyncio.gather(
        *(r.accept("k", "g", "{}", 600) for r in replicas for _ in range(5))
    )
    assert sum(not r.duplicate for r in results) == 1
    for r in replicas:
        await r.close()


async def test_expired_lease_is_claimed_again_and_live_one_is_not(store) -> None:
    await store.accept("k", "g", "{}", 600)
    first = await store.claim("crashed-worker", lease=30)
    assert await store.claim("other", lease=30) is None
    store.lease.now += 31
    again = await store.claim("other", lease=30)
    assert again is not None and again.id == first.id and again.attempts == 2


async def test_a_groups_notifications_are_claimed_in_order(store) -> None:
    await store.accept("k1", "group-a", "firing", 600)
    await store.accept("k2", "group-a", "resolved", 600)
    await store.accept("k3", "group-b", "other", 600)
    first = await store.claim("w1", 30)
    second = await store.claim("w2", 30)
    assert (first.payload, second.payload) == ("firing", "other")
    assert await store.claim("w3", 30) is None, "resolved waits for firing to finish"
    await store.finish(first.claim)
    assert (await store.claim("w3", 30)).payload == "resolved"


async def test_retry_later_waits_and_release_hands_back_at_once(store) -> None:
    await store.accept("k", "g", "{}", 600)
    claimed = await store.claim("w", 30)
    await store.retry_later(claimed.claim, "slack down", delay=10)
    assert await store.claim("w", 30) is None
    store.lease.now += 10
    claimed = await store.claim("w", 30)
    await store.release(claimed.claim)
    assert (await store.claim("w", 30)).attempts == 2, "a released claim does not count"


def columns(
    backend: Backend, notification_id: int, *names: str, table: str = "notifications"
) -> tuple[Any, ...]:
    """Columns of a notification's row (or of its row in `table`, keyed by notification_id),
    read the way an operator would: straight from the database."""
    key = "id" if table == "notifications" else "notification_id"
    query = f"SELECT {', '.join(names)} FROM {table} WHERE {key} = {int(notification_id)}"
    if backend.name == "sqlite":
        with contextlib.closing(sqlite3.connect(backend.url.removeprefix("sqlite:///"))) as conn:
            return tuple(conn.execute(query).fetchone())
    with psycopg.connect(backend.url) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return tuple(row)


async def test_the_holder_and_the_last_error_are_on_record_and_cleared_when_done(
    store, backend: Backend
) -> None:
    accepted = await store.accept("k", "g", "{}", 600)
    held = await store.claim("worker-7", 30)
    assert columns(backend, accepted.id, "owner") == ("worker-7",)
    await store.retry_later(held.claim, "slack: 503 Service Unavailable", delay=0)
    assert columns(backend, accepted.id, "owner", "last_error") == (
        None,
        "slack: 503 Service Unavailable",
    )
    held = await store.claim("worker-7", 30)
    await store.give_up(held.claim, "telegram: 403 Forbidden")
    assert columns(backend, accepted.id, "last_error") == ("telegram: 403 Forbidden",)
    assert columns(backend, accepted.id, "finished_at") != (None,), "failed when: for purge"

    second = await store.accept("k2", "g2", "{}", 600)
    held = await store.claim("worker-7", 30)
    await store.retry_later(held.claim, "slack: timeout", delay=0)
    await store.finish((await store.claim("worker-7", 30)).claim)
    assert columns(backend, second.id, "owner", "last_error") == (None, None)


async def test_a_taken_over_claim_can_write_nothing(store) -> None:
    await store.accept("k", "g", "{}", 600)
    stalled = await store.claim("w1", 30)
    store.lease.now += 31
    taker = await store.claim("w2", 30)
    assert taker.claim.token > stalled.claim.token
    assert not await store.renew(stalled.claim, 30)
    for write in (
        store.finish(stalled.claim),
        store.retry_later(stalled.claim, "x", 0),
        store.give_up(stalled.claim, "x"),
        store.release(stalled.claim),
        store.save_enrichment(stalled.claim, "{}", opening("g", {"a"})),
        store.record_step(stalled.claim, "slack", "post", "C1:1"),
        store.record_delivery(stalled.claim, "slack", "sent", "C1:1", None),
        store.save_message_ref(stalled.claim, 1, "slack", "C1:1"),
        store.revise(stalled.claim, taker.id, '{"edited": true}'),
    ):
        with pytest.raises(LeaseLostError, match=rf"^notification {taker.id}: claim taken over$"):
            await write
    assert await store.deliveries(taker.id) == {}
    assert await store.open_incident("g") is None
    assert (await store.edit_target(taker.id)).enrichment is None
    assert await store.renew(taker.claim, 30)
    await store.finish(taker.claim)


async def test_the_same_worker_claiming_again_gets_a_new_fence(store) -> None:
    await store.accept("k", "g", "{}", 600)
    first = await store.claim("w", 30)
    store.lease.now += 31
    second = await store.claim("w", 30)
    assert first.claim.owner == second.claim.owner
    with pytest.raises(LeaseLostError):
        await store.finish(first.claim)


async def test_an_expired_lease_is_lost_even_before_anyone_takes_it(store) -> None:
    await store.accept("k", "g", "{}", 600)
    stalled = await store.claim("w", 30)
    store.lease.now += 31
    assert not await store.renew(stalled.claim, 30)


async def test_deliveries_steps_and_thread_refs_are_recorded(store) -> None:
    accepted = await store.accept("k", "g", "{}", 600)
    held = (await store.claim("w", 30)).claim
    incident = await store.save_enrichment(held, '{"shown": true}', opening("g", {"a"}))
    await store.record_step(held, "telegram", "part-1", "41")
    await store.record_delivery(held, "slack", "sent", "C1:123.4", None)
    await store.save_message_ref(held, incident, "slack", "C1:123.4")
    deliveries = await store.deliveries(accepted.id)
    assert deliveries["slack"].ref == "C1:123.4" and deliveries["slack"].status == "sent"
    assert deliveries["telegram"].status == "partial"
    assert deliveries["telegram"].steps == {"part-1": "41"}
    ref = await store.message_ref(incident, "slack")
    assert ref.ref == "C1:123.4" and ref.original == '{"shown": true}'
    assert await store.message_ref(incident, "telegram") is None
    await store.record_delivery(held, "teams", "failed", None, "403: bot removed from channel")
    failed = (await store.deliveries(accepted.id))["teams"]
    assert (failed.status, failed.ref, failed.error) == (
        "failed",
        None,
        "403: bot removed from channel",
    )


async def test_an_incident_opens_escalates_ends_and_a_new_one_gets_its_own_thread(store) -> None:
    async def process(key: str, firing: set[str], kind: str = "new") -> int | None:
        await store.accept(key, "g", "{}", 600)
        held = (await store.claim("w", 30)).claim
        incident = await store.open_incident("g")
        change = Transition(kind, "g", incident.id if incident else None, frozenset(firing))
        incident_id = await store.save_enrichment(held, "{}", change)
        if incident_id is not None and incident is None:
            await store.save_message_ref(held, incident_id, "slack", f"C1:{key}")
        await store.finish(held)
        return incident_id

    first = await process("k1", {"a"})
    assert (await store.open_incident("g")).firing == {"a"}
    assert await process("k2", {"a", "b"}, "escalation") == first
    assert await process("k3", set(), "resolved") == first
    assert await store.open_incident("g") is None
    second = await process("k4", {"a"})
    assert second != first
    assert (await store.message_ref(second, "slack")).ref == "C1:k4"
    assert (await store.message_ref(first, "slack")).ref == "C1:k1"


async def test_purge_removes_finished_work_past_retention_only(store) -> None:
    done = await store.accept("k1", "g1", "{}", 600)
    await store.accept("k2", "g2", "{}", 600)
    claimed = await store.claim("w", 30)
    assert claimed.id == done.id
    await store.record_delivery(claimed.claim, "console", "sent", None, None)
    await store.finish(claimed.claim)
    store.clock.now += 100
    assert await store.purge(older_than_seconds=50) == 1
    assert await store.backlog() == 1
    assert await store.deliveries(done.id) == {}


async def test_purge_keeps_a_live_incident_its_thread_and_first_message(store) -> None:
    await store.accept("k1", "g", "{}", 600)
    held = (await store.claim("w", 30)).claim
    incident = await store.save_enrichment(held, '{"first": true}', opening("g", {"a"}))
    await store.save_message_ref(held, incident, "slack", "C1:1")
    await store.finish(held)
    for hour in range(1, 4):  # Alertmanager repeats the firing group every hour
        store.clock.now += 3600
        await store.accept(f"repeat-{hour}", "g", "{}", 600)
        repeat = (await store.claim("w", 30)).claim
        change = Transition("repeat", "g", incident, frozenset({"a"}))
        await store.save_enrichment(repeat, "{}", change)
        await store.finish(repeat)
    await store.purge(older_than_seconds=2 * 3600)
    assert (await store.open_incident("g")).id == incident
    thread = await store.message_ref(incident, "slack")
    assert thread.ref == "C1:1" and thread.original == '{"first": true}'


async def test_purge_forgets_ended_and_silent_incidents(store) -> None:
    await store.accept("k1", "ended", "{}", 600)
    held = (await store.claim("w", 30)).claim
    ended = await store.save_enrichment(held, "{}", opening("ended", {"a"}))
    await store.save_message_ref(held, ended, "slack", "C1:1")
    await store.finish(held)
    await store.accept("k2", "ended", "{}", 600)
    held = (await store.claim("w", 30)).claim
    await store.save_enrichment(held, "{}", Transition("resolved", "ended", ended, frozenset()))
    await store.finish(held)
    await store.accept("k3", "silent", "{}", 600)
    held = (await store.claim("w", 30)).claim
    await store.save_enrichment(held, "{}", opening("silent", {"b"}))
    await store.finish(held)
    store.clock.now += 3 * 3600
    assert await store.purge(older_than_seconds=2 * 3600) == 3
    assert await store.message_ref(ended, "slack") is None
    assert await store.open_incident("silent") is None, "nothing heard for longer than retention"


async def test_the_oldest_unfinished_notification_is_the_backlogs_age(store) -> None:
    assert await store.oldest_backlog_age() == 0, "nothing waits"
    await store.accept("a", "g1", "{}", 600)
    assert 0 <= await store.oldest_backlog_age() < 1, "just accepted"
    store.clock.now += 30
    await store.accept("b", "g2", "{}", 600)
    store.clock.now += 10
    assert 40 <= await store.oldest_backlog_age() < 41
    first = await store.claim("w", 30)
    assert 40 <= await store.oldest_backlog_age() < 41, "being processed is not finished"
    await store.finish(first.claim)
    assert 10 <= await store.oldest_backlog_age() < 11


async def test_llm_spend_adds_up_per_utc_day_across_replicas_and_restarts(
    backend: Backend,
) -> None:
    first, second = await backend.open(), await backend.open()
    await first.add_llm_spend("2026-11-22", 0.25, 1000, 200)
    await second.add_llm_spend("2026-11-22", 0.5, 3000, 400)
    await second.add_llm_spend("2026-11-23", 1.0, 10, 5)
    await first.close()
    await second.close()
    again = await backend.open()
    try:
        assert await again.llm_spend("2026-11-22") == DailySpend(0.75, 4000, 600, 2)
        assert await again.llm_spend("2026-11-23") == DailySpend(1.0, 10, 5, 1)
        assert await again.llm_spend("2026-11-21") == DailySpend(), "a day without calls"
    finally:
        await again.close()


async def test_the_admin_list_is_newest_first_and_filters_by_time_and_failure(store) -> None:
    for key in ("a", "b", "c"):
        await store.accept(key, f"g-{key}", "{}", 600)
        store.clock.now += 10
    failing = await store.claim("w", 30)
    await store.give_up(failing.claim, "slack: channel_not_found")
    listed = await store.notifications(since=None, failed_only=False, limit=10)
    assert [r.group_id for r in listed] == ["g-c", "g-b", "g-a"]
    assert [r.state for r in listed] == ["pending", "pending", "failed"]
    a, b = listed[2], listed[1]
    assert 9 <= b.received_at - a.received_at <= 11, "Unix seconds on the store's clock"
    assert (a.last_error, a.attempts, a.finished_at is not None) == (
        "slack: channel_not_found",
        1,
        True,
    )
    since_b = await store.notifications(since=b.received_at, failed_only=False, limit=10)
    assert [r.group_id for r in since_b] == ["g-c", "g-b"]
    assert [r.id for r in await store.notifications(None, True, 10)] == [a.id]
    assert len(await store.notifications(None, False, 2)) == 2


async def test_show_finds_a_notification_with_its_payload_and_enrichment(store) -> None:
    accepted = await store.accept("k", "g", '{"x": 1}', 600)
    claimed = await store.claim("w", 30)
    await store.save_enrichment(claimed.claim, '{"title": "APIDown"}', opening("g", {"f1"}))
    shown = await store.notification(accepted.id)
    assert (shown.id, shown.kind, shown.state, shown.payload, shown.enrichment) == (
        accepted.id,
        "alert",
        "processing",
        '{"x": 1}',
        '{"title": "APIDown"}',
    )
    assert await store.notification(accepted.id + 1000) is None


async def test_retry_requeues_a_failed_notification_for_the_channels_that_did_not_get_it(
    store,
) -> None:
    accepted = await store.accept("k", "g", "{}", 600)
    for _ in range(3):
        held = await store.claim("w", 30)
        if held.attempts < 3:
            await store.retry_later(held.claim, "telegram: 502", 0)
    await store.record_delivery(held.claim, "slack", "sent", "C1:1.2", None)
    await store.record_delivery(held.claim, "telegram", "failed", None, "chat not found")
    await store.give_up(held.claim, "telegram: chat not found")
    assert await store.requeue(accepted.id)
    again = await store.claim("w", 30)
    assert (again.id, again.attempts) == (accepted.id, 1), "fresh attempts, claimable at once"
    assert set(await store.deliveries(accepted.id)) == {"slack"}, "the failure is forgotten"
    assert not await store.requeue(accepted.id), "only a failed notification is requeued"
    await store.finish(again.claim)
    assert not await store.requeue(accepted.id)
    assert not await store.requeue(accepted.id + 1000)


async def test_incident_history_is_the_groups_ended_incidents_in_the_window_and_last_diagnosis(
    store,
) -> None:
    async def incident(group: str, diagnosis: str | None, lasting: float) -> int | None:
        await store.accept(f"{group}-{store.clock.now}-open", group, "{}", 600)
        held = (await store.claim("w", 30)).claim
        shown = {"diagnosis": {"diagnosis": diagnosis}} if diagnosis else {"title": "x"}
        opened = await store.save_enrichment(held, json.dumps(shown), opening(group, {"a"}))
        await store.finish(held)
        store.clock.now += lasting
        await store.accept(f"{group}-{store.clock.now}-end", group, "{}", 600)
        held = (await store.claim("w", 30)).claim
        change = Transition("resolved", group, opened, frozenset())
        await store.save_enrichment(held, '{"title": "resolved"}', change)
        await store.finish(held)
        return opened

    assert await store.incident_history("g", 7 * 86400) == IncidentHistory([], None)
    await incident("g", "too old to count", 60)
    store.clock.now += 8 * 86400
    await incident("g", "clock drift on the probing host", 300)
    store.clock.now += 3600
    await incident("g", None, 600)  # its message had no diagnosis: the previous one is the last
    await incident("other", "another group's", 60)
    history = await store.incident_history("g", 7 * 86400)
    assert [round(end - opened) for opened, end in history.ended] == [300, 600]
    assert history.last_diagnosis == "clock drift on the probing host"
    # An open incident is not history yet.
    await store.accept("open", "g", "{}", 600)
    held = (await store.claim("w", 30)).claim
    await store.save_enrichment(held, "{}", opening("g", {"a"}))
    assert len((await store.incident_history("g", 7 * 86400)).ended) == 2


def reporting(*alerts: dict[str, str]) -> str:
    """A stored webhook payload with these alerts (APIDown, fingerprint and times as given)."""
    items = []
    for alert in alerts:
        status = alert.get("status", "firing")
        items.append(
            {"status": status, "labels": {"alertname": "APIDown"}, "endsAt": "2026-11-21T10:05:00Z"}
            | alert
        )
    return json.dumps({"status": "firing", "alerts": items})


def firings_in(payload: str) -> tuple[Firing, ...]:
    return firings_of([Alert.model_validate(a) for a in json.loads(payload)["alerts"]])


async def process(store: Any, key: str, group: str, payload: str) -> None:
    """Accept, claim and enrich one notification, as the pipeline does, reporting its firings."""
    await store.accept(key, group, payload, 600)
    held = (await store.claim("w", 30)).claim
    change = Transition("new", group, None, frozenset(), firings_in(payload))
    await store.save_enrichment(held, "{}", change)
    await store.finish(held)


async def test_alert_history_is_the_alerts_firings_any_group_reported_within_the_window(
    store,
) -> None:
    def alert(fingerprint: str, starts: str, **extra: str) -> dict[str, str]:
        return {"fingerprint": fingerprint, "startsAt": starts, **extra}

    await process(store, "too-old", "g1", reporting(alert("f1", "2026-11-01T10:00:00Z")))
    store.clock.now += 8 * 86400
    await process(store, "a", "g1", reporting(alert("f1", "2026-11-21T10:00:00Z")))
    resolved = alert("f1", "2026-11-21T10:00:00Z", status="resolved")
    await process(store, "b", "g2", reporting(resolved))
    await process(
        store, "b2", "g1", reporting(alert("f1", "2026-11-21T10:00:00Z"))
    )  # an old repeat
    await process(store, "c", "g3", reporting(alert("f1", "2026-11-21T11:00:00Z")))
    mention = alert("f2", "2026-11-21T09:00:00Z", note="about f1")
    await process(store, "d", "g3", reporting(mention))
    await process(store, "e", "g4", reporting(alert("f1%_", "2026-11-21T08:00:00Z")))
    await store.accept("unprocessed", "g5", reporting(alert("f1", "2026-11-21T12:00:00Z")), 600)
    start = datetime(2026, 11, 21, 10, tzinfo=UTC).timestamp()
    assert await store.alert_history("f1", 7 * 86400) == [
        AlertEpisode(start, start + 300),
        AlertEpisode(start + 3600, None),
    ]
    assert await store.alert_history("f1%_", 7 * 86400) == [], "not an Alertmanager fingerprint"
    assert await store.alert_history("f2", 7 * 86400) == [AlertEpisode(start - 3600, None)]
    assert await store.alert_history("f3", 7 * 86400) == []


async def test_alert_history_is_the_latest_firings_at_most(
    backend: Backend, store, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = "sqlite" if backend.name == "sqlite" else "postgres"
    monkeypatch.setattr(f"app.store.{module}_history.ALERT_HISTORY_ROWS", 2)
    for hour in (10, 8, 9):
        starts = f"2026-11-21T{hour:02}:00:00Z"
        await process(
            store, f"n{hour}", f"g{hour}", reporting({"fingerprint": "f1", "startsAt": starts})
        )
    episodes = await store.alert_history("f1", 7 * 86400)
    assert [datetime.fromtimestamp(e.started, UTC).hour for e in episodes] == [9, 10]


async def test_purge_forgets_firings_no_notification_reported_within_retention(store) -> None:
    await process(
        store, "a", "g", reporting({"fingerprint": "f1", "startsAt": "2026-11-21T08:00:00Z"})
    )
    store.clock.now += 3 * 86400
    await process(
        store, "b", "g", reporting({"fingerprint": "f2", "startsAt": "2026-11-21T09:00:00Z"})
    )
    store.clock.now += 3 * 86400
    await store.purge(4 * 86400)
    assert await store.alert_history("f1", 30 * 86400) == []
    assert len(await store.alert_history("f2", 30 * 86400)) == 1


async def test_an_upgrade_to_schema_6_starts_the_alerts_memory_and_fills_it_from_then_on(
    backend: Backend,
) -> None:
    old = await backend.open()
    before = {"fingerprint": "f1", "startsAt": "2026-11-21T10:00:00Z", "status": "resolved"}
    await process(old, "a", "g", reporting(before))
    await old.close()
    downgrade = ["DROP TABLE alert_firings"]
    if backend.name == "sqlite":
        with contextlib.closing(sqlite3.connect(backend.url.removeprefix("sqlite:///"))) as conn:
            conn.executescript("DROP TABLE alert_firings; PRAGMA user_version = 5;")
    else:
        downgrade.append("UPDATE alert_enricher_meta SET value = '5' WHERE key = 'schema_version'")
        async with await psycopg.AsyncConnection.connect(backend.url, autocommit=True) as conn:
            for statement in downgrade:
                await conn.execute(statement)
    upgraded = await backend.open()
    assert await upgraded.alert_history("f1", 86400) == [], "not read back from old payloads"
    after = {"fingerprint": "f1", "startsAt": "2026-11-21T11:00:00Z"}
    await process(upgraded, "b", "h", reporting(after))
    start = datetime(2026, 11, 21, 11, tzinfo=UTC).timestamp()
    assert await upgraded.alert_history("f1", 86400) == [AlertEpisode(start, None)]
    await upgraded.close()


async def test_a_role_has_one_holder_until_its_lease_runs_out_or_it_is_dropped(store) -> None:
    assert await store.hold_role("telegram-poller", "replica-a", 30)
    assert not await store.hold_role("telegram-poller", "replica-b", 30), "held by a"
    assert await store.hold_role("other-role", "replica-b", 30), "roles are independent"
    store.lease.now += 20
    assert await store.hold_role("telegram-poller", "replica-a", 30), "a extends its own"
    store.lease.now += 25
    assert not await store.hold_role("telegram-poller", "replica-b", 30), "extended to +50"
    store.lease.now += 10
    assert await store.hold_role("telegram-poller", "replica-b", 30), "a's lease ran out: b's now"
    assert not await store.hold_role("telegram-poller", "replica-a", 30)
    await store.drop_role("telegram-poller", "replica-a")  # not a's to drop: nothing changes
    assert not await store.hold_role("telegram-poller", "replica-a", 30)
    await store.drop_role("telegram-poller", "replica-b")
    assert await store.hold_role("telegram-poller", "replica-a", 30), "dropped: free at once"


def test_the_last_diagnosis_prefers_the_lanes_result_and_skips_unreadable_rows() -> None:
    final = json.dumps({"diagnosis": {"diagnosis": "the model's"}, "source": {}})
    shown = json.dumps({"diagnosis": {"diagnosis": "the preliminary rules'"}})
    assert last_diagnosis([(final, shown)]) == "the model's"
    assert last_diagnosis([(None, "not json"), (None, '{"diagnosis": null}'), (None, shown)]) == (
        "the preliminary rules'"
    )
    assert last_diagnosis([]) is None
