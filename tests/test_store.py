import asyncio
import json
import os
import sqlite3
from pathlib import Path

import pytest

from app.incident import Transition
from app.store import LeaseLostError, SQLiteStore, StoreError
from app.store.sqlite import sqlite_path
from tests.fakes import FIXTURES


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path):
    wall, lease = Clock(), Clock(500.0)
    s = await SQLiteStore.open(f"sqlite:///{tmp_path}/s.db", wall, lease, boot="boot-1")
    s.clock, s.lease = wall, lease
    yield s
    await s.close()


def opening(group: str, firing: set[str]) -> Transition:
    return Transition(kind="new", group_id=group, incident_id=None, firing=frozenset(firing))


async def test_accepted_notification_survives_reopening(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    first = await SQLiteStore.open(url)
    accepted = await first.accept("k", "g", '{"x": 1}', window=600)
    await first.close()
    second = await SQLiteStore.open(url)
    claimed = await second.claim("w", lease=30)
    await second.close()
    assert claimed is not None and claimed.id == accepted.id and claimed.payload == '{"x": 1}'


async def test_same_key_within_window_is_a_duplicate(store) -> None:
    first = await store.accept("k", "g", "{}", window=600)
    again = await store.accept("k", "g", "{}", window=600)
    assert not first.duplicate and again.duplicate and again.id == first.id
    store.clock.now += 601
    assert not (await store.accept("k", "g", "{}", window=600)).duplicate


async def test_concurrent_accepts_of_the_same_notification_store_it_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    replicas = [await SQLiteStore.open(url) for _ in range(4)]
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
    ):
        with pytest.raises(LeaseLostError):
            await write
    assert await store.deliveries(taker.id) == {}
    assert await store.open_incident("g") is None
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


async def test_leases_ignore_wall_clock_jumps(store) -> None:
    await store.accept("k1", "g1", "{}", 600)
    await store.accept("k2", "g2", "{}", 600)
    held = await store.claim("w", 30)
    store.clock.now += 6 * 3600  # NTP steps the wall clock forwards
    assert await store.claim("other", 30) is not None and await store.renew(held.claim, 30)
    await store.retry_later(held.claim, "slack down", delay=5)
    store.clock.now -= 12 * 3600  # ... and backwards
    store.lease.now += 5
    assert (await store.claim("w", 30)).id == held.id, "the retry is not delayed by hours"


async def test_a_reboot_voids_every_lease(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    before = await SQLiteStore.open(url, lease_clock=Clock(90_000.0), boot="boot-1")
    await before.accept("k", "g", "{}", 600)
    assert await before.claim("w", 30) is not None
    await before.close()
    after = await SQLiteStore.open(url, lease_clock=Clock(12.0), boot="boot-2")
    again = await after.claim("w", 30)
    await after.close()
    assert again is not None, "the lease from the last boot (until 90030) does not hold"


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


async def test_a_store_of_the_first_release_is_migrated_with_its_live_threads(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript((FIXTURES / "schema-v1.sql").read_text())
    old.execute(
        "INSERT INTO notifications (idem_key, group_id, payload, received_at, state, finished_at,"
        " enrichment) VALUES ('k', 'g', '{}', 1, 'done', 1, '{\"first\": 1}')"
    )
    old.execute(
        "INSERT INTO notifications (idem_key, group_id, payload, received_at, state, owner,"
        " lease_until) VALUES ('k2', 'h', '{}', 1, 'processing', 'old', 9e18)"
    )
    old.execute("INSERT INTO groups VALUES ('g', ?, 1, 1)", (json.dumps(["fp1"]),))
    old.execute("INSERT INTO message_refs VALUES ('g', 'slack', 'C1:9.9', 1, 1)")
    old.commit()
    old.close()
    store = await SQLiteStore.open(f"sqlite:///{path}")
    incident = await store.open_incident("g")
    assert incident is not None and incident.firing == {"fp1"}
    thread = await store.message_ref(incident.id, "slack")
    assert thread.ref == "C1:9.9" and thread.original == '{"first": 1}'
    assert (await store.claim("new", 30)).group_id == "h", "the old process's lease is void"
    await store.close()
    reopened = await SQLiteStore.open(f"sqlite:///{path}")
    assert (await reopened.open_incident("g")).id == incident.id
    await reopened.close()


async def test_read_only_store_raises_store_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        url = "sqlite:///:memory:"
        store = await SQLiteStore.open(url)
        await store._run(lambda: store._conn.execute("PRAGMA query_only=ON"))
    else:  # pragma: no cover - CI runs as root
        store = await SQLiteStore.open(f"sqlite:///{tmp_path}/s.db")
        os.chmod(tmp_path / "s.db", 0o400)
    with pytest.raises(StoreError):
        await store.accept("k", "g", "{}", 600)
    await store.close()


def test_store_url_forms() -> None:
    assert sqlite_path("sqlite:///./data/enricher.db") == "./data/enricher.db"
    assert sqlite_path("sqlite:////var/lib/x.db") == "/var/lib/x.db"
    with pytest.raises(StoreError, match="unsupported STORE_URL scheme 'postgresql'"):
        sqlite_path("postgresql://user:secret@db/x")


async def test_store_unusable_at_start_heals_without_restart(tmp_path: Path) -> None:
    blocker = tmp_path / "disk"
    blocker.write_text("not a directory")
    store = await SQLiteStore.open(f"sqlite:///{blocker}/s.db")
    with pytest.raises(StoreError):
        await store.ping()
    with pytest.raises(StoreError):
        await store.accept("k", "g", "{}", 600)
    blocker.unlink()
    await store.ping()
    assert not (await store.accept("k", "g", "{}", 600)).duplicate
    await store.close()


async def test_a_failed_commit_leaves_no_transaction_open(tmp_path: Path) -> None:
    store = await SQLiteStore.open(f"sqlite:///{tmp_path}/s.db")

    def violates_at_commit(conn):  # a deferred foreign key fails only when COMMIT runs
        conn.execute("PRAGMA defer_foreign_keys=ON")
        conn.execute(
            "INSERT INTO deliveries (notification_id, channel, status, updated_at)"
            " VALUES (999, 'slack', 'sent', 0)"
        )

    with pytest.raises(StoreError, match="FOREIGN KEY"):
        await store._run(store._tx(violates_at_commit))
    assert not store._conn.in_transaction
    assert not (await store.accept("k", "g", "{}", 600)).duplicate
    await store.close()
