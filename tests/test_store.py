import asyncio
import os
from pathlib import Path

import pytest

from app.sqlite_store import SQLiteStore, sqlite_path
from app.store import GroupState, StoreError


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path):
    clock = Clock()
    s = await SQLiteStore.open(f"sqlite:///{tmp_path}/s.db", clock)
    s.clock = clock
    yield s
    await s.close()


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
    store.clock.now += 31
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
    await store.finish(first.id, "w1")
    assert (await store.claim("w3", 30)).payload == "resolved"


async def test_retry_later_waits_and_release_hands_back_at_once(store) -> None:
    await store.accept("k", "g", "{}", 600)
    claimed = await store.claim("w", 30)
    await store.retry_later(claimed.id, "w", "slack down", delay=10)
    assert await store.claim("w", 30) is None
    store.clock.now += 10
    claimed = await store.claim("w", 30)
    await store.release(claimed.id, "w")
    assert (await store.claim("w", 30)).attempts == 2, "a released claim does not count"


async def test_only_the_owner_can_finish(store) -> None:
    await store.accept("k", "g", "{}", 600)
    claimed = await store.claim("w1", 30)
    store.clock.now += 31
    await store.claim("w2", 30)
    await store.finish(claimed.id, "w1")
    assert await store.renew(claimed.id, "w2", 30)
    assert not await store.renew(claimed.id, "w1", 30)


async def test_deliveries_and_message_refs_are_recorded(store) -> None:
    accepted = await store.accept("k", "g", "{}", 600)
    await store.record_delivery(accepted.id, "slack", "sent", "C1:123.4", None)
    await store.record_delivery(accepted.id, "telegram", "failed", None, "chat not found")
    deliveries = await store.deliveries(accepted.id)
    assert deliveries["slack"].ref == "C1:123.4" and deliveries["telegram"].status == "failed"
    await store.save_enrichment(accepted.id, '{"shown": true}', "g", None)
    await store.save_message_ref("g", "slack", "C1:123.4", accepted.id)
    ref = await store.message_ref("g", "slack")
    assert ref.ref == "C1:123.4" and ref.original == '{"shown": true}'
    assert await store.message_ref("g", "telegram") is None


async def test_group_state_is_saved_with_the_enrichment_and_cleared_when_over(store) -> None:
    accepted = await store.accept("k", "g", "{}", 600)
    state = GroupState(firing=frozenset({"a", "b"}), root_id=accepted.id)
    await store.save_enrichment(accepted.id, "{}", "g", state)
    assert await store.group_state("g") == state
    await store.save_enrichment(accepted.id, "{}", "g", None)
    assert await store.group_state("g") is None


async def test_purge_removes_finished_work_past_retention_only(store) -> None:
    done = await store.accept("k1", "g1", "{}", 600)
    await store.accept("k2", "g2", "{}", 600)
    claimed = await store.claim("w", 30)
    assert claimed.id == done.id
    await store.record_delivery(done.id, "console", "sent", None, None)
    await store.finish(done.id, "w")
    store.clock.now += 100
    assert await store.purge(older_than_seconds=50) == 1
    assert await store.backlog() == 1
    assert await store.deliveries(done.id) == {}


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
    with pytest.raises(StoreError, match="unsupported"):
        sqlite_path("postgresql://db/x")


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
