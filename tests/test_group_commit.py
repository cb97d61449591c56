"""Group commit: concurrent store work shares one transaction, and no caller is told a write is
durable when it is not."""

from __future__ import annotations

import asyncio
import errno
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from app.store import group_commit
from app.store.group_commit import GroupCommit, WriterLock


def connector(path: Path) -> Callable[[], sqlite3.Connection]:
    conn: list[sqlite3.Connection] = []

    def connect() -> sqlite3.Connection:
        if not conn:
            c = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA foreign_keys=ON")
            c.execute("CREATE TABLE IF NOT EXISTS parent (id INTEGER PRIMARY KEY)")
            c.execute(
                "CREATE TABLE IF NOT EXISTS t (v INTEGER UNIQUE,"
                " parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
            )
            conn.append(c)
        return conn[0]

    return connect


def committed(path: Path) -> list[int]:
    with sqlite3.connect(path) as other:  # another connection sees only what was committed
        return [row[0] for row in other.execute("SELECT v FROM t ORDER BY v")]


def insert(v: int) -> Callable[[sqlite3.Connection], int]:
    return lambda c: c.execute("INSERT INTO t (v) VALUES (?)", (v,)).rowcount


async def hold_thread(writer: GroupCommit) -> tuple[threading.Event, asyncio.Future[None]]:
    """Keep the thread busy on a job until the returned event is set, so others queue up."""
    started, release = threading.Event(), threading.Event()

    def blocker() -> None:
        started.set()
        release.wait(5)

    job = asyncio.ensure_future(writer.call(blocker))
    await asyncio.to_thread(started.wait, 5)
    return release, job


async def test_concurrent_writes_commit_together_and_every_one_is_durable(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    writer = GroupCommit(connector(path))
    release, blocker = await hold_thread(writer)
    writes = [asyncio.ensure_future(writer.run(insert(v))) for v in range(50)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in writes)
    release.set()
    assert await asyncio.gather(*writes) == [1] * 50
    await blocker
    assert writer.batches == 1 and writer.jobs == 50
    assert committed(path) == list(range(50))
    await writer.stop()


async def test_a_failing_write_is_rolled_back_alone(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    writer = GroupCommit(connector(path))
    release, blocker = await hold_thread(writer)

    def two_rows_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (v) VALUES (100)")
        conn.execute("INSERT INTO t (v) VALUES (1)")  # UNIQUE: the other job's row

    first = asyncio.ensure_future(writer.run(insert(1)))
    failing = asyncio.ensure_future(writer.run(two_rows_then_fail))
    last = asyncio.ensure_future(writer.run(insert(2)))
    release.set()
    await blocker
    assert await first == 1 and await last == 1
    with pytest.raises(sqlite3.IntegrityError):
        await failing
    assert writer.batches == 1
    assert committed(path) == [1, 2], "the failing job's first row is gone with it"
    await writer.stop()


async def test_a_failed_commit_fails_every_write_of_the_batch(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    writer = GroupCommit(connector(path))
    release, blocker = await hold_thread(writer)

    def orphan(conn: sqlite3.Connection) -> None:  # a deferred foreign key fails only at COMMIT
        conn.execute("INSERT INTO t (v, parent) VALUES (7, 999)")

    writes = [asyncio.ensure_future(writer.run(job)) for job in (insert(1), orphan, insert(2))]
    release.set()
    await blocker
    outcomes = await asyncio.gather(*writes, return_exceptions=True)
    assert all(isinstance(o, sqlite3.IntegrityError) for o in outcomes), outcomes
    assert committed(path) == []
    assert await writer.run(insert(3)) == 1, "the next batch starts clean"
    assert committed(path) == [3]
    await writer.stop()


async def test_a_cancelled_caller_does_not_break_the_batch(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    writer = GroupCommit(connector(path))
    release, blocker = await hold_thread(writer)
    cancelled = asyncio.ensure_future(writer.run(insert(1)))
    kept = asyncio.ensure_future(writer.run(insert(2)))
    await asyncio.sleep(0)
    cancelled.cancel()
    release.set()
    await blocker
    assert await kept == 1
    assert committed(path) == [2], "a job cancelled before the thread took it is skipped"
    await writer.stop()


async def test_after_stop_nothing_more_is_taken(tmp_path: Path) -> None:
    writer = GroupCommit(connector(tmp_path / "s.db"))
    assert await writer.run(insert(1)) == 1
    await writer.stop()
    with pytest.raises(sqlite3.OperationalError, match="closed"):
        await writer.run(insert(2))


async def test_a_dying_thread_fails_its_callers_instead_of_leaving_them_waiting(
    tmp_path: Path,
) -> None:
    writer = GroupCommit(connector(tmp_path / "s.db"))

    def exit_thread() -> None:
        raise SystemExit(3)

    with pytest.raises(RuntimeError, match="SystemExit"):
        await asyncio.wait_for(writer.call(exit_thread), 5)
    with pytest.raises(sqlite3.OperationalError, match="closed"):
        await asyncio.wait_for(writer.run(insert(1)), 5)


# Processes sharing one file take turns through the writer lock


async def test_a_write_waits_while_another_process_writes_and_goes_on_when_it_is_done(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    writer = GroupCommit(connector(path), lock=WriterLock(f"{path}-writer"))
    other = WriterLock(f"{path}-writer")  # another process's turn, taken from this test
    with other.held():
        write = asyncio.ensure_future(writer.run(insert(1)))
        await asyncio.sleep(0.3)
        assert not write.done(), "a write never runs during another's turn"
    assert await asyncio.wait_for(write, 1) == 1
    assert committed(path) == [1]
    await writer.stop()


def test_a_writer_that_just_had_its_turn_queues_behind_one_that_was_waiting(
    tmp_path: Path,
) -> None:
    path = f"{tmp_path}/s.db-writer"
    busy, waiting = WriterLock(path), WriterLock(path)
    turns: list[str] = []
    asked = threading.Event()

    def wait_for_a_turn() -> None:
        asked.set()
        with waiting.held():
            turns.append("waiting")

    with busy.held():
        thread = threading.Thread(target=wait_for_a_turn)
        thread.start()
        asked.wait(5)
        time.sleep(0.2)  # the other writer is blocked on the lock now
    with busy.held():  # released and taken again at once, as a busy pipeline does
        turns.append("busy again")
    thread.join(5)
    assert turns == ["waiting", "busy again"]


async def test_with_a_writer_lock_a_long_batch_commits_in_short_turns(tmp_path: Path) -> None:
    def slow_insert(v: int) -> Callable[[sqlite3.Connection], int]:
        def run(c: sqlite3.Connection) -> int:
            time.sleep(group_commit.TURN_SECONDS / 2)
            return insert(v)(c)

        return run

    for lock, turns in ((None, range(1, 2)), (WriterLock(f"{tmp_path}/a.db-writer"), range(5, 11))):
        path = tmp_path / ("a.db" if lock else "b.db")
        writer = GroupCommit(connector(path), lock=lock)
        release, blocker = await hold_thread(writer)
        writes = [asyncio.ensure_future(writer.run(slow_insert(v))) for v in range(10)]
        await asyncio.sleep(0.05)
        release.set()
        await blocker
        assert await asyncio.gather(*writes) == [1] * 10
        assert committed(path) == list(range(10))
        assert writer.batches in turns, (
            "at most two slow jobs a turn with the lock; one batch without"
        )
        await writer.stop()


async def test_a_file_system_without_flock_writes_without_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(group_commit.fcntl, "flock", no_locks)
    path = tmp_path / "s.db"
    writer = GroupCommit(connector(path), lock=WriterLock(f"{path}-writer"))
    assert await writer.run(insert(1)) == 1
    assert await writer.run(insert(2)) == 1, "the thread goes on"
    assert committed(path) == [1, 2]
    assert caplog.text.count("no writer lock") == 1
    await writer.stop()
