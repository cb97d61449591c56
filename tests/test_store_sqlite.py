"""What only the SQLite backend has: the host's monotonic lease clock and its boots, migrations from
the first release, and the disk going read-only or missing."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.store import SQLiteStore, StoreError, sqlite_schema
from app.store.sqlite_schema import boot_id
from app.store.urls import sqlite_path
from tests.fakes import FIXTURES
from tests.test_store import Clock


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Any]:
    wall, lease = Clock(), Clock(500.0)
    s: Any = await SQLiteStore.open(f"sqlite:///{tmp_path}/s.db", wall, lease, boot="boot-1")
    s.clock, s.lease = wall, lease
    yield s
    await s.close()


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


async def test_a_new_boot_frees_the_roles_of_the_last(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    before = await SQLiteStore.open(url, lease_clock=Clock(90_000.0), boot="boot-1")
    assert await before.hold_role("telegram-poller", "old", 30)
    await before.close()
    after = await SQLiteStore.open(url, lease_clock=Clock(12.0), boot="boot-2")
    try:
        assert await after.hold_role("telegram-poller", "new", 30), "90,030 meant nothing now"
    finally:
        await after.close()


async def test_a_restart_within_the_same_boot_keeps_every_lease(tmp_path: Path) -> None:
    """Two processes on one machine (a restart, or `replay` beside `serve`): the second must not
    void the live lease of the first."""
    url = f"sqlite:///{tmp_path}/s.db"
    first = await SQLiteStore.open(url, lease_clock=Clock(100.0), boot="boot-1")
    await first.accept("k", "g", "{}", 600)
    assert await first.claim("w", 30) is not None
    second = await SQLiteStore.open(url, lease_clock=Clock(110.0), boot="boot-1")
    try:
        assert await second.claim("other", 30) is None, "the lease until 130 holds at 110"
    finally:
        await second.close()
        await first.close()


async def test_reopening_keeps_the_claim_order_by_rank(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    before = await SQLiteStore.open(url, Clock(), Clock(100.0), boot="boot-1")
    await before.accept("warning", "g1", "{}", 600, rank=3)
    await before.accept("critical", "g2", "{}", 600, rank=0)
    await before.close()
    after = await SQLiteStore.open(url, Clock(), Clock(100.0), boot="boot-1")
    try:
        first = await after.claim("w", 30)
    finally:
        await after.close()
    assert first is not None and first.group_id == "g2", "the critical, accepted last, first"


def test_the_boot_is_the_kernels_boot_id() -> None:
    assert boot_id() == Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def test_without_proc_the_boot_is_the_wall_clock_minute_it_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_proc(self: Path) -> str:
        raise FileNotFoundError(self)

    monkeypatch.setattr(Path, "read_text", no_proc)
    monkeypatch.setattr(sqlite_schema.time, "time", lambda: 1_700_000_000.0)
    monkeypatch.setattr(sqlite_schema.time, "monotonic", lambda: 3_000.0)
    assert boot_id() == "boot-28333283"  # (1_700_000_000 - 3_000) / 60, rounded


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
        await store._call(lambda: store._conn.execute("PRAGMA query_only=ON"))
    else:  # pragma: no cover - CI runs as root
        store = await SQLiteStore.open(f"sqlite:///{tmp_path}/s.db")
        os.chmod(tmp_path / "s.db", 0o400)
    with pytest.raises(StoreError):
        await store.accept("k", "g", "{}", 600)
    await store.close()


def test_store_url_forms() -> None:
    assert sqlite_path("sqlite:///./data/enricher.db") == "./data/enricher.db"
    assert sqlite_path("sqlite:////var/lib/x.db") == "/var/lib/x.db"
    with pytest.raises(StoreError, match="unsupported STORE_URL scheme 'mysql'"):
        sqlite_path("mysql://user:secret@db/x")


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
        await store._tx(violates_at_commit)
    assert not store._conn.in_transaction
    assert not (await store.accept("k", "g", "{}", 600)).duplicate
    await store.close()


async def test_after_a_reboot_a_diagnosis_running_before_it_is_taken_again_at_once(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    before = await SQLiteStore.open(url, lease_clock=lambda: 90_000.0, boot="boot-a")
    await before.accept("k", "g", "{}", 600)
    page = await before.claim("w", 30)
    await before.queue_diagnosis(page.claim, "[]", 0)
    assert await before.claim_diagnosis("lane", 50) is not None
    await before.close()
    after = await SQLiteStore.open(url, lease_clock=lambda: 10.0, boot="boot-b")
    job = await after.claim_diagnosis("lane", 50)
    await after.close()
    assert job is not None, "the old boot's lease means nothing after a reboot"


async def test_the_store_creates_the_directories_of_its_path(tmp_path: Path) -> None:
    path = tmp_path / "not" / "yet" / "there" / "enricher.db"
    store = await SQLiteStore.open(f"sqlite:///{path}")
    try:
        await store.accept("k", "g", "{}", 600)
    finally:
        await store.close()
    assert path.is_file()
