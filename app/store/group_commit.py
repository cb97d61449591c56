"""Group commit for SQLite: one thread owns the connection and commits concurrent work together.

Every store call is a job, a function of the connection. The thread takes all the jobs waiting (up
to MAX_BATCH) and runs them in one transaction, each inside a SAVEPOINT of its own, then commits
once: one fsync for the batch instead of one per call, which is what lets an alert storm's accepts
and the workers' writes share the disk. Durability per call is unchanged:

- a caller resumes only after the COMMIT that made its work durable (a 202 is never sent before);
- a job that raises is rolled back to its savepoint alone and gets its own error; the rest commit;
- when COMMIT itself fails (disk full), every job of the batch gets that error and nothing of it is
  kept: the webhook answers 503 and Alertmanager sends the notification again.

Several processes on one file (two services, or an admin command beside one; the pipeline's
process writes through the service's, app/store/remote.py) take turns through lock files beside
it (`WriterLock`): a transaction runs holding one. SQLite
alone would make the second writer retry after sleeping 1, 2, 5 ... 100 ms (its busy handler); in
the benchmark that put 260 ms into the webhook's p99. A waiter is woken as the lock is released.
A transaction takes no more jobs once TURN_SECONDS have passed (it still ends with the job under
way and its COMMIT).

Jobs of one caller run in the order they were submitted; a job submitted while a batch commits
waits for the next batch (a few hundred microseconds at most on an idle disk). A job whose caller
was cancelled before the thread took it is skipped. Should the thread itself die, every waiting
and later caller gets an error instead of waiting forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import math
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)
MAX_BATCH = 128
TURN_SECONDS = 0.005  # with a writer lock: a transaction's jobs stop being added after this

Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]


@dataclass
class _Job:
    fn: Callable[..., Any]
    future: asyncio.Future[Any]
    transaction: bool  # False: run alone, outside any transaction (connect, close)


class WriterLock:
    """Turns at writing the database, for every process that opens it: an exclusive flock on
    `<path>.lock` held while writing, taken in the order of a second one on `<path>.next`. flock
    alone is not fair: a process releasing it and taking it again at once (the pipeline's next
    transaction) would keep a waiting webhook out for as long as it has work. The waiter first
    holds `.next`, so the one that just wrote queues behind it.

    If the files cannot be opened (a read-only directory), writes run without them: SQLite's own
    locking still keeps them apart, only more slowly; the next write tries again."""

    def __init__(self, path: str) -> None:
        self._paths = (f"{path}.next", f"{path}.lock")
        self._fds: tuple[int, int] | None = None
        self._warned = False

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        fds = self._open()
        if fds is None:
            yield
            return
        queue_fd, lock_fd = fds
        try:
            fcntl.flock(queue_fd, fcntl.LOCK_EX)
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX)
            finally:
                fcntl.flock(queue_fd, fcntl.LOCK_UN)
        except OSError as exc:  # a file system without flock (some network mounts)
            self._warn(exc)
            yield
            return
        try:
            yield
        finally:
            fcntl.flock(lock_fd, fcntl.LOCK_UN)

    def close(self) -> None:
        fds, self._fds = self._fds, None
        for fd in fds or ():
            os.close(fd)

    def _open(self) -> tuple[int, int] | None:
        if self._fds is None:
            opened: list[int] = []
            try:
                Path(self._paths[0]).parent.mkdir(parents=True, exist_ok=True)
                for path in self._paths:
                    opened.append(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
                self._fds = (opened[0], opened[1])
            except OSError as exc:
                for fd in opened:
                    os.close(fd)
                self._warn(exc)
        return self._fds

    def _warn(self, exc: OSError) -> None:
        if not self._warned:
            self._warned = True
            log.warning("no writer lock at %s: %s", self._paths[1], exc.strerror or exc)


class GroupCommit:
    """The thread that owns one SQLite connection; `run` and `call` hand it work."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        name: str = "store",
        lock: WriterLock | None = None,
    ) -> None:
        self._connect = connect
        self._lock = lock
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._stopped = False
        self.batches = 0  # transactions committed or attempted, for tests and the bench
        self.jobs = 0
        self._thread.start()

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """fn(connection) inside a transaction, durable once this returns."""
        return await self._submit(fn, transaction=True)

    async def call(self, fn: Callable[[], T]) -> T:
        """fn() on the thread, alone and outside any transaction."""
        return await self._submit(fn, transaction=False)

    async def _submit(self, fn: Callable[..., T], *, transaction: bool) -> T:
        if self._stopped or not self._thread.is_alive():
            raise sqlite3.OperationalError("store is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put(_Job(fn, future, transaction))
        return await future

    async def stop(self) -> None:
        """Finish what was submitted, then end the thread."""
        self._stopped = True
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)

    def _serve(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._jobs.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            stopping = None in batch
            jobs = [job for job in batch if job is not None and not job.future.cancelled()]
            try:
                self._run_batch(jobs)
            except BaseException as exc:  # never leave a caller waiting on a dead thread
                log.critical("the store's thread stopped: %s: %s", type(exc).__name__, exc)
                self._stopped = True
                self._release_file()
                self._settle([(job.future, None, exc) for job in jobs])
                self._fail_queued(exc)
                return
        if self._lock is not None:
            self._lock.close()

    def _release_file(self) -> None:
        """A dying thread leaves no transaction open: another process would wait on it."""
        with contextlib.suppress(Exception):
            conn = self._connect()
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        if self._lock is not None:
            self._lock.close()

    def _fail_queued(self, exc: BaseException) -> None:
        failed: list[Outcome] = []
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                failed.append((job.future, None, exc))
        self._settle(failed)

    def _run_batch(self, batch: list[_Job]) -> None:
        """Consecutive transactional jobs commit together; a direct job runs alone, in order."""
        pending: list[_Job] = []
        for job in batch:
            if job.transaction:
                pending.append(job)
                continue
            self._commit_all(pending)
            pending = []
            with self._held():
                outcome = self._direct(job)
            self._settle([outcome])
        self._commit_all(pending)

    def _commit_all(self, jobs: list[_Job]) -> None:
        """As few transactions as the writer lock's turn allows (see `_commit`)."""
        while jobs:
            with self._held():
                outcomes, jobs = self._commit(jobs)
            self._settle(outcomes)

    def _held(self) -> contextlib.AbstractContextManager[None]:
        return self._lock.held() if self._lock is not None else contextlib.nullcontext()

    @staticmethod
    def _direct(job: _Job) -> Outcome:
        try:
            return job.future, job.fn(), None
        except Exception as exc:
            return job.future, None, exc

    def _commit(self, jobs: list[_Job]) -> tuple[list[Outcome], list[_Job]]:
        """The jobs in one transaction, and those left for the next: with a writer lock, a
        transaction takes no more jobs once it has run TURN_SECONDS, so another process waits
        for one short turn, not for a whole batch of another's writes."""
        turn_ends = time.monotonic() + TURN_SECONDS if self._lock is not None else math.inf
        try:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
        except Exception as exc:
            self._count(jobs)
            return [(job.future, None, exc) for job in jobs], []
        outcomes: list[Outcome] = []
        ran = 0
        try:
            for job in jobs:
                ran += 1
                outcomes.append(self._savepoint(conn, job))
                if time.monotonic() > turn_ends:
                    break
            conn.execute("COMMIT")
        except Exception as exc:  # a savepoint or COMMIT failed: nothing of the batch is kept
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            own = {id(future): error for future, _, error in outcomes if error is not None}
            outcomes = [(job.future, None, own.get(id(job.future), exc)) for job in jobs[:ran]]
        self._count(jobs[:ran])
        return outcomes, jobs[ran:]

    def _count(self, jobs: list[_Job]) -> None:
        self.batches += 1
        self.jobs += len(jobs)

    @staticmethod
    def _savepoint(conn: sqlite3.Connection, job: _Job) -> Outcome:
        conn.execute("SAVEPOINT job")
        try:
            result = job.fn(conn)
        except Exception as exc:
            conn.execute("ROLLBACK TO job")
            conn.execute("RELEASE job")
            return job.future, None, exc
        conn.execute("RELEASE job")
        return job.future, result, None

    @staticmethod
    def _settle(outcomes: list[Outcome]) -> None:
        """Resolve the callers' futures, one wake-up per event loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
        for outcome in outcomes:
            by_loop.setdefault(outcome[0].get_loop(), []).append(outcome)
        for loop, settled in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_resolve, settled)


def _resolve(outcomes: list[Outcome]) -> None:
    for future, result, error in outcomes:
        if future.done():  # the caller was cancelled; its work still ran
            continue
        if error is None:
            future.set_result(result)
        elif isinstance(error, (StopIteration, KeyboardInterrupt, SystemExit)):
            future.set_exception(RuntimeError(f"store thread: {type(error).__name__}"))
        else:
            future.set_exception(error)
