import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from app.delivery import Dispatcher
from app.lease import Lease
from app.metrics import Metrics
from app.models import DiagnosisSource, EnrichedNotification
from app.notifiers.base import Progress
from app.pipeline import Pipeline, RetryLaterError
from app.store import Claim, LeaseLostError, SQLiteStore, StoredNotification, StoreError
from app.worker import WorkerPool, backoff
from tests.fakes import RecordingNotifier, fixture_text
from tests.test_store import Clock

FIRING = fixture_text("alertmanager-0.25-firing_apidown_binance.json")


class CountingEnricher:
    def __init__(self, stall: asyncio.Event | None = None) -> None:
        self.calls = 0
        self.stall = stall

    async def contexts(self, payload, kind) -> list:
        self.calls += 1
        if self.stall is not None and self.calls == 1:
            await self.stall.wait()
        return []

    async def memory(self, payload) -> None:
        return None

    async def diagnose(self, payload, contexts, memory=None):
        return None, DiagnosisSource(kind="none")

    def assemble(
        self,
        payload,
        kind,
        contexts,
        diagnosis,
        source,
        *,
        notification_id=None,
        known=None,
        memory=None,
    ) -> EnrichedNotification:
        return EnrichedNotification(
            notification_id=notification_id,
            group_id=payload.group_id,
            status=payload.status,
            title="t",
            severity="critical",
            source=DiagnosisSource(kind="none"),
        )


async def wait_until(condition, timeout: float = 5.0) -> None:
    """Poll `condition` (a plain or async callable) until it is true."""
    async with asyncio.timeout(timeout):
        while True:
            result = condition()
            if await result if asyncio.iscoroutine(result) else result:
                return
            await asyncio.sleep(0.02)


def pool(store, process, metrics: Metrics | None = None, **kw) -> WorkerPool:
    options = dict(
        count=2, lease_seconds=30, max_attempts=3, retention_seconds=3600, grace_seconds=1
    )
    options.update(kw)
    return WorkerPool(store, process, metrics or Metrics(), **options)


def processed(metrics: Metrics, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "alert_enricher_notifications_processed_total", {"outcome": outcome}
    )
    return value or 0.0


async def test_work_left_in_the_store_is_processed_once_after_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    store = await SQLiteStore.open(url)
    payload = fixture_text("alertmanager-0.25-firing_apidown_binance.json")
    await store.accept("k", "g", payload, 600)
    await store.close()  # the process "died" before any worker ran

    store = await SQLiteStore.open(url)
    notifier, enricher = RecordingNotifier(), CountingEnricher()
    pipeline = Pipeline(store, enricher, Dispatcher([notifier], store, Metrics()), Metrics())
    workers = pool(store, pipeline.run)
    workers.start()

    async def drained() -> bool:
        return await store.backlog() == 0

    await wait_until(drained)
    await asyncio.sleep(0.1)
    await workers.stop()
    await store.close()
    assert len(notifier.sent) == 1 and enricher.calls == 1


async def test_retry_skips_channels_already_sent_and_reuses_the_diagnosis(tmp_path: Path) -> None:
    store = await SQLiteStore.open(f"sqlite:///{tmp_path}/s.db")
    accepted = await store.accept(
        "k", "g", fixture_text("alertmanager-0.25-firing_apidown_binance.json"), 600
    )
    good, flaky = RecordingNotifier("good"), RecordingNotifier("flaky", fail_times=1)
    enricher = CountingEnricher()
    pipeline = Pipeline(store, enricher, Dispatcher([good, flaky], store, Metrics()), Metrics())

    first = await store.claim("w", 30)
    with pytest.raises(RetryLaterError, match="flaky: simulated outage"):
        await pipeline.run(first, Lease(store, first.claim, 30))
    await store.retry_later(first.claim, "flaky", delay=0)
    second = await store.claim("w", 30)
    assert second.enrichment is not None
    await pipeline.run(second, Lease(store, second.claim, 30))
    await store.close()
    assert (len(good.sent), len(flaky.sent), enricher.calls) == (1, 1, 1)
    assert accepted.id == second.id


async def test_permanent_channel_failure_does_not_block_the_other_channel(tmp_path: Path) -> None:
    store = await SQLiteStore.open(f"sqlite:///{tmp_path}/s.db")
    await store.accept("k", "g", fixture_text("alertmanager-0.25-firing_apidown_binance.json"), 600)
    good, broken = (
        RecordingNotifier("good"),
        RecordingNotifier("broken", fail_times=9, retryable=False),
    )
    pipeline = Pipeline(
        store, CountingEnricher(), Dispatcher([broken, good], store, Metrics()), Metrics()
    )
    stored = await store.claim("w", 30)
    # no retry: a permanent error is recorded, not repeated
    await pipeline.run(stored, Lease(store, stored.claim, 30))
    deliveries = await store.deliveries(stored.id)
    await store.close()
    assert len(good.sent) == 1 and broken.calls == 1
    assert (
        deliveries["broken"].status == "failed" and deliveries["broken"].error == "simulated outage"
    )


async def test_failing_work_is_retried_with_backoff_then_given_up(tmp_path: Path) -> None:
    store = await SQLiteStore.open(f"sqlite:///{tmp_path}/s.db")
    await store.accept("k", "g", "{}", 600)
    attempts: list[int] = []

    async def explode(stored: StoredNotification, lease: Lease) -> None:
        attempts.append(stored.attempts)
        raise RuntimeError("bug")

    workers = pool(store, explode, max_attempts=1)
    workers.start()

    async def given_up() -> bool:
        return await store.backlog() == 0

    await wait_until(given_up)
    await workers.stop()
    await store.close()
    assert attempts == [1]
    assert [backoff(n) for n in (1, 2, 3, 10)] == [5, 10, 20, 300]


async def stopped_while_busy(
    tmp_path: Path, grace_seconds: float, grace: float | None = None
) -> tuple[float, StoredNotification | None]:
    """A pool stopped while its one notification is still being processed: how long the stop
    took, and the notification as the next process claims it."""
    store = await SQLiteStore.open(f"sqlite:///{tmp_path}/s.db")
    await store.accept("k", "g", "{}", 600)
    started = asyncio.Event()

    async def slow(stored: StoredNotification, lease: Lease) -> None:
        started.set()
        await asyncio.sleep(60)

    workers = pool(store, slow, grace_seconds=grace_seconds)
    workers.start()
    await started.wait()
    began = time.monotonic()
    await workers.stop(grace=grace)
    stopped_in = time.monotonic() - began
    again = await store.claim("next-process", 30)
    await store.close()
    return stopped_in, again


async def test_shutdown_hands_unfinished_work_back(tmp_path: Path) -> None:
    _, again = await stopped_while_busy(tmp_path, grace_seconds=0.1)
    assert again is not None and again.attempts == 1


async def test_a_stop_told_no_grace_hands_unfinished_work_back_at_once(tmp_path: Path) -> None:
    # The pipeline's service is gone: the pool's own 30 s grace is not waited out.
    stopped_in, again = await stopped_while_busy(tmp_path, grace_seconds=30, grace=0)
    assert stopped_in < 5, "the pool's own 30 s grace was not waited out"
    assert again is not None and again.attempts == 1


class TwoPartNotifier:
    """Sends a message in two parts, stalling between them when told to."""

    name = "chat"

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.between = asyncio.Event()
        self.stall_once = True
        self.first_sent = asyncio.Event()

    async def send(self, notification, thread, progress: Progress | None = None) -> str | None:
        progress = progress or Progress()
        ref = await progress.step("part-1", lambda: self._part("part-1"))
        self.first_sent.set()
        if self.stall_once:
            self.stall_once = False
            await self.between.wait()
        await progress.step("part-2", lambda: self._part("part-2"))
        return ref

    async def _part(self, name: str) -> str:
        self.parts.append(name)
        return f"ref-{name}"


async def stalled_store(tmp_path: Path) -> tuple[SQLiteStore, Clock]:
    lease_clock = Clock(100.0)
    store = await SQLiteStore.open(f"sqlite:///{tmp_path}/s.db", lease_clock=lease_clock)
    await store.accept("k", "g", FIRING, 600)
    return store, lease_clock


async def test_a_worker_stalled_past_its_lease_before_sending_sends_nothing(
    tmp_path: Path,
) -> None:
    store, lease_clock = await stalled_store(tmp_path)
    stall = asyncio.Event()
    notifier, enricher = RecordingNotifier("chat"), CountingEnricher(stall)
    pipeline = Pipeline(store, enricher, Dispatcher([notifier], store, Metrics()), Metrics())
    metrics = Metrics()
    stalled = pool(store, pipeline.run, metrics, count=1)
    stalled.start()
    await wait_until(lambda: enricher.calls == 1)
    lease_clock.now += 31  # the stall outlasts LEASE_SECONDS
    taker = pool(store, pipeline.run, count=1)
    taker.start()

    async def delivered() -> bool:
        return await store.backlog() == 0

    await wait_until(delivered)
    stall.set()  # the stalled worker wakes up and finds its claim gone
    await wait_until(lambda: processed(metrics, "lost") == 1)
    await stalled.stop()
    await taker.stop()
    await store.close()
    assert len(notifier.sent) == 1 and enricher.calls == 2
    assert processed(metrics, "done") == 0


async def test_a_worker_stalled_between_two_parts_sends_nothing_more_and_no_part_twice(
    tmp_path: Path,
) -> None:
    store, lease_clock = await stalled_store(tmp_path)
    chat = TwoPartNotifier()
    pipeline = Pipeline(store, CountingEnricher(), Dispatcher([chat], store, Metrics()), Metrics())
    stalled = pool(store, pipeline.run, count=1)
    stalled.start()
    await chat.first_sent.wait()
    lease_clock.now += 31
    taker = pool(store, pipeline.run, count=1)
    taker.start()

    async def delivered() -> bool:
        return await store.backlog() == 0

    await wait_until(delivered)
    chat.between.set()
    await asyncio.sleep(0.05)
    await stalled.stop()
    await taker.stop()
    deliveries = await store.deliveries(1)
    await store.close()
    assert chat.parts == ["part-1", "part-2"], "the taker sent only the missing part"
    assert deliveries["chat"].status == "sent" and deliveries["chat"].ref == "ref-part-1"


async def test_a_worker_whose_claim_is_taken_stops_at_once(tmp_path: Path) -> None:
    store = await SQLiteStore.open(f"sqlite:///{tmp_path}/s.db")
    await store.accept("k", "g", "{}", 600)
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def slow(stored: StoredNotification, lease: Lease) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    workers = pool(store, slow, count=1, lease_seconds=0.3)
    workers.start()
    await started.wait()
    await store._tx(lambda c: c.execute("UPDATE notifications SET fence = fence + 1"))
    async with asyncio.timeout(2):
        await cancelled.wait()
    await workers.stop()
    await store.close()


async def test_the_lease_is_renewed_while_work_runs(tmp_path: Path) -> None:
    store = await SQLiteStore.open(f"sqlite:///{tmp_path}/s.db")
    await store.accept("k", "g", "{}", 600)
    started, finished = asyncio.Event(), asyncio.Event()

    async def slow(stored: StoredNotification, lease: Lease) -> None:
        started.set()
        await asyncio.sleep(1.0)
        finished.set()

    workers = pool(store, slow, count=1, lease_seconds=0.3)
    workers.start()
    await started.wait()
    while not finished.is_set():
        assert await store.claim("thief", 30) is None, "the lease ran out while work ran"
        await asyncio.sleep(0.05)
    await workers.stop()
    await store.close()


class ClaimCounter:
    """A store in front of a real one that counts claims."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.claims = 0

    def __getattr__(self, name: str):
        return getattr(self.store, name)

    async def claim(self, owner: str, lease: float):
        self.claims += 1
        return await self.store.claim(owner, lease)


async def test_one_accepted_notification_wakes_one_worker_not_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("app.worker.IDLE_POLL_SECONDS", 60)  # no poll may claim in the meantime
    store = await SQLiteStore.open(f"sqlite:///{tmp_path}/s.db")
    counting = ClaimCounter(store)
    notifier, enricher = RecordingNotifier(), CountingEnricher()
    pipeline = Pipeline(store, enricher, Dispatcher([notifier], store, Metrics()), Metrics())
    workers = pool(counting, pipeline.run, count=16)
    workers.start()
    await wait_until(lambda: counting.claims >= 16)  # each looked once and went idle
    await asyncio.sleep(0.05)
    before = counting.claims
    await store.accept("k", "g", FIRING, 600)
    workers.wake()
    await wait_until(lambda: len(notifier.sent) == 1)
    await asyncio.sleep(0.1)
    await workers.stop()
    # the woken worker claims it, then looks once more and finds nothing
    assert counting.claims - before == 2
    await store.close()


class ScriptedStore:
    """A store whose queue holds the given notifications; it records what the workers did."""

    def __init__(self, *queue: StoredNotification | StoreError, renew: bool = True) -> None:
        self.queue = list(queue)
        self.renew_result = renew
        self.calls: list[tuple] = []
        self.settled = asyncio.Event()  # finish, retry_later, give_up or release happened
        self.renewed = asyncio.Event()
        self.claims: list[tuple[str, float]] = []
        self.notify: Callable[[], None] | None = None
        self.fail_finish = False
        self.fail_release: Exception | None = None
        self.fail_backlog = False
        self.backlogs = 0
        self.purged = 0

    async def claim(self, owner: str, lease: float) -> StoredNotification | None:
        self.claims.append((owner, lease))
        if not self.queue:
            return None
        item = self.queue.pop(0)
        if isinstance(item, StoreError):
            raise item
        return item

    async def renew(self, claim: Claim, lease: float) -> bool:
        self.calls.append(("renew", claim, lease))
        self.renewed.set()
        return self.renew_result

    def _record(self, *call: object) -> None:
        self.calls.append(call)
        self.settled.set()

    async def finish(self, claim: Claim) -> None:
        if self.fail_finish:
            self.fail_finish = False
            self._record("finish failed", claim)
            raise StoreError("disk I/O error")
        self._record("finish", claim)

    async def retry_later(self, claim: Claim, error: str, delay: float) -> None:
        self._record("retry_later", claim, error, delay)

    async def give_up(self, claim: Claim, error: str) -> None:
        self._record("give_up", claim, error)

    async def release(self, claim: Claim) -> None:
        self._record("release", claim)
        if self.fail_release is not None:
            raise self.fail_release

    async def backlog(self) -> int:
        self.backlogs += 1
        if self.fail_backlog:
            raise StoreError("database is locked")
        return 7

    async def oldest_backlog_age(self) -> float:
        return 42.0

    async def purge(self, retention: float) -> int:
        self.calls.append(("purge", retention))
        return self.purged

    async def watch(self, notified: Callable[[], None], answered: Callable[[int], None]) -> None:
        self.notify = notified
        self.answered = answered
        await asyncio.Event().wait()

    def outcomes(self) -> list[tuple]:
        return [c for c in self.calls if c[0] not in ("renew", "purge")]


def stored(id_: int = 1, attempts: int = 1) -> StoredNotification:
    return StoredNotification(id_, "g", "{}", attempts, None, None, Claim(id_, "w", 10 + id_))


async def run_pool(
    store: ScriptedStore,
    process: Callable[[StoredNotification, Lease], Awaitable[None]],
    metrics: Metrics | None = None,
    *,
    settled: int = 1,
    **options: Any,
) -> None:
    """Start one worker, wait until `settled` notifications were finished, retried, given up or
    released, and stop it."""
    workers = pool(store, process, metrics, count=1, **options)
    workers.start()
    async with asyncio.timeout(5):
        while len(store.outcomes()) < settled:
            store.settled.clear()
            await store.settled.wait()
    await workers.stop()


async def succeed(stored: StoredNotification, lease: Lease) -> None:
    return None


async def test_processed_work_is_marked_finished_under_its_own_claim() -> None:
    store, metrics = ScriptedStore(stored(1)), Metrics()
    await run_pool(store, succeed, metrics)
    assert store.outcomes() == [("finish", Claim(1, "w", 11))]
    assert processed(metrics, "done") == 1 and processed(metrics, "retry") == 0


async def test_a_failure_is_retried_later_with_backoff_not_marked_done() -> None:
    store, metrics = ScriptedStore(stored(1, attempts=2)), Metrics()

    async def explode(stored: StoredNotification, lease: Lease) -> None:
        raise RuntimeError("bug")

    await run_pool(store, explode, metrics, max_attempts=3)
    assert store.outcomes() == [("retry_later", Claim(1, "w", 11), "RuntimeError: bug", 10.0)]
    assert processed(metrics, "retry") == 1 and processed(metrics, "done") == 0


async def test_a_retry_later_error_keeps_its_own_reason() -> None:
    store, metrics = ScriptedStore(stored(1, attempts=1)), Metrics()

    async def channel_down(stored: StoredNotification, lease: Lease) -> None:
        raise RetryLaterError("slack: 503")

    await run_pool(store, channel_down, metrics, max_attempts=3)
    assert store.outcomes() == [("retry_later", Claim(1, "w", 11), "slack: 503", 5.0)]


async def test_the_last_allowed_attempt_gives_up_and_counts_a_failure() -> None:
    store, metrics = ScriptedStore(stored(1, attempts=3), stored(2, attempts=2)), Metrics()

    async def channel_down(stored: StoredNotification, lease: Lease) -> None:
        raise RetryLaterError("slack: 503")

    await run_pool(store, channel_down, metrics, settled=2, max_attempts=3)
    assert store.outcomes() == [
        ("give_up", Claim(1, "w", 11), "slack: 503"),
        ("retry_later", Claim(2, "w", 12), "slack: 503", 10.0),
    ]
    assert processed(metrics, "failed") == 1 and processed(metrics, "retry") == 1


async def test_work_whose_claim_was_lost_is_neither_finished_nor_retried() -> None:
    store, metrics = ScriptedStore(stored(1), stored(2)), Metrics()

    async def lost_then_ok(stored: StoredNotification, lease: Lease) -> None:
        if stored.id == 1:
            raise LeaseLostError("taken over")

    await run_pool(store, lost_then_ok, metrics)
    assert store.outcomes() == [("finish", Claim(2, "w", 12))], "the worker went on"
    assert processed(metrics, "lost") == 1 and processed(metrics, "done") == 1


async def test_a_store_error_while_processing_leaves_the_work_for_the_lease_to_expire() -> None:
    store, metrics = ScriptedStore(stored(1), stored(2)), Metrics()

    async def store_fails_then_ok(stored: StoredNotification, lease: Lease) -> None:
        if stored.id == 1:
            raise StoreError("disk I/O error")

    await run_pool(store, store_fails_then_ok, metrics)
    assert store.outcomes() == [("finish", Claim(2, "w", 12))]
    assert processed(metrics, "retry") == 0 and processed(metrics, "failed") == 0


async def test_a_store_error_on_finish_does_not_stop_the_worker() -> None:
    store = ScriptedStore(stored(1), stored(2))
    store.fail_finish = True
    metrics = Metrics()
    await run_pool(store, succeed, metrics, settled=2)
    assert store.outcomes() == [("finish failed", Claim(1, "w", 11)), ("finish", Claim(2, "w", 12))]
    assert processed(metrics, "done") == 1


async def test_a_store_error_on_claim_does_not_stop_the_worker() -> None:
    store = ScriptedStore(StoreError("database is locked"), stored(2))
    workers = pool(store, succeed, count=1)
    workers.start()
    workers.wake()  # the worker idles after the failed claim; a ring sends it back at once
    async with asyncio.timeout(5):
        await store.settled.wait()
    await workers.stop()
    assert store.outcomes() == [("finish", Claim(2, "w", 12))]


async def test_a_failing_store_is_logged_once_per_interval_saying_what_failed_and_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every worker polls every second: a store that is down for a minute must not write a
    line per worker per poll."""
    down = StoreError("PostgreSQL: no connection within 2s")
    store = ScriptedStore(down, down, down, stored(4))
    workers = pool(store, succeed, count=1)
    workers.start()
    async with asyncio.timeout(5):
        while not store.settled.is_set():
            workers.wake()
            await asyncio.sleep(0.01)
    await workers.stop()
    errors = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "app.worker"]
    assert errors[0] == (
        "ERROR",
        "cannot claim work from the store: PostgreSQL: no connection within 2s",
    )
    assert [e for e in errors if e[0] == "ERROR"] == [errors[0]], "three failures, one line"


async def test_a_bug_is_logged_with_its_traceback_and_a_channels_refusal_without(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = ScriptedStore(stored(1), stored(2))

    async def bug_then_refusal(stored: StoredNotification, lease: Lease) -> None:
        if stored.id == 1:
            raise RuntimeError("bug")
        raise RetryLaterError("slack: 503")

    await run_pool(store, bug_then_refusal, settled=2, max_attempts=3)
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert [r.getMessage() for r in tracebacks] == ["processing notification 1 failed"]
    assert "RuntimeError: bug" in caplog.text
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "notification 1 will be retried in 5s: RuntimeError: bug",
        "notification 2 will be retried in 5s: slack: 503",
    ]


async def test_the_lease_is_renewed_for_the_lease_length_while_work_runs() -> None:
    store = ScriptedStore(stored(1))

    async def until_renewed(stored: StoredNotification, lease: Lease) -> None:
        await store.renewed.wait()

    await run_pool(store, until_renewed, lease_seconds=0.03)
    renewals = [c for c in store.calls if c[0] == "renew"]
    assert renewals and all(c[1:] == (Claim(1, "w", 11), 0.03) for c in renewals)
    assert store.outcomes() == [("finish", Claim(1, "w", 11))]


async def test_a_lost_lease_cancels_the_work_and_marks_nothing() -> None:
    store, metrics = ScriptedStore(stored(1), renew=False), Metrics()
    cancelled = asyncio.Event()

    async def forever(stored: StoredNotification, lease: Lease) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    workers = pool(store, forever, metrics, count=1, lease_seconds=0.03)
    workers.start()
    async with asyncio.timeout(5):
        await cancelled.wait()
        while processed(metrics, "lost") == 0:
            await asyncio.sleep(0)
    await workers.stop()
    assert store.outcomes() == []
    assert processed(metrics, "done") == 0


async def test_stopping_hands_running_work_back_unfinished() -> None:
    store, metrics = ScriptedStore(stored(1)), Metrics()
    started = asyncio.Event()

    async def forever(stored: StoredNotification, lease: Lease) -> None:
        started.set()
        await asyncio.Event().wait()

    workers = pool(store, forever, metrics, count=1, grace_seconds=0)
    workers.start()
    await started.wait()
    await workers.stop()
    assert store.outcomes() == [("release", Claim(1, "w", 11))]
    assert processed(metrics, "done") == 0 and workers.alive == 0


async def test_each_worker_claims_under_its_own_name_for_the_lease_length() -> None:
    store = ScriptedStore()
    workers = pool(store, succeed, count=3, lease_seconds=42)
    workers.start()
    assert workers.size == 3
    async with asyncio.timeout(5):
        while len(store.claims) < 3:
            await asyncio.sleep(0)
    assert workers.alive == 3
    await workers.stop()
    owners = {owner for owner, _ in store.claims}
    assert len(owners) == 3 and all(owner.startswith("worker-") for owner in owners)
    assert {lease for _, lease in store.claims} == {42}
    assert workers.alive == 0


async def test_another_replicas_notice_wakes_a_worker_and_the_llm_lane() -> None:
    store = ScriptedStore()
    lane_woken = asyncio.Event()
    workers = pool(store, succeed, count=1, also_wake=lane_woken.set)
    workers.start()
    async with asyncio.timeout(5):
        while store.notify is None or not store.claims:
            await asyncio.sleep(0)
    store.queue.append(stored(1))
    store.notify()
    async with asyncio.timeout(5):
        await store.settled.wait()
    await workers.stop()
    assert lane_woken.is_set()
    assert store.outcomes() == [("finish", Claim(1, "w", 11))]


async def test_another_replicas_answer_is_passed_to_the_llm_lane() -> None:
    store = ScriptedStore()
    answers: list[int] = []
    workers = pool(store, succeed, count=1, answered=answers.append)
    workers.start()
    async with asyncio.timeout(5):
        while store.notify is None:
            await asyncio.sleep(0)
    store.answered(42)
    await workers.stop()
    assert answers == [42]


async def test_a_host_booted_less_than_an_hour_ago_purges_at_its_first_idle_moment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The monotonic clock counts from boot: a purge due "an hour after 0" waited out the first hour.
    monkeypatch.setattr("app.worker.time", SimpleNamespace(monotonic=lambda: 60.0))
    store = ScriptedStore()
    workers = pool(store, succeed, count=1, retention_seconds=1234)
    workers.start()
    async with asyncio.timeout(5):
        while ("purge", 1234) not in store.calls:
            await asyncio.sleep(0)
    await workers.stop()


async def test_an_idle_worker_reports_the_backlog_and_purges_past_retention() -> None:
    store, metrics = ScriptedStore(), Metrics()
    workers = pool(store, succeed, metrics, count=1, retention_seconds=1234)
    workers.start()
    async with asyncio.timeout(5):
        while ("purge", 1234) not in store.calls:
            await asyncio.sleep(0)
    await workers.stop()
    assert metrics.registry.get_sample_value("alert_enricher_backlog") == 7
    assert metrics.registry.get_sample_value("alert_enricher_queue_oldest_age_seconds") == 42
    assert store.calls.count(("purge", 1234)) == 1


@pytest.mark.parametrize(
    ("attempt", "seconds"),
    [(0, 5), (1, 5), (2, 10), (3, 20), (4, 40), (6, 160), (7, 300), (50, 300)],
)
def test_backoff_doubles_from_five_seconds_up_to_five_minutes(attempt: int, seconds: float) -> None:
    assert backoff(attempt) == seconds


async def test_a_pool_never_started_has_no_live_workers_and_stops_cleanly() -> None:
    store = ScriptedStore(stored(1))
    workers = pool(store, succeed, count=2)
    assert workers.alive == 0 and workers.size == 2
    await workers.stop()
    assert store.calls == [] and store.claims == []


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "app.worker" and r.levelno == level]


async def test_each_outcome_is_logged_naming_its_notification(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = ScriptedStore(stored(1), stored(2), stored(3))
    store.fail_finish = True  # the first finish: notification 2's

    async def lost_first(stored: StoredNotification, lease: Lease) -> None:
        if stored.id == 1:
            raise LeaseLostError("taken over")

    with caplog.at_level(logging.INFO, logger="app.worker"):
        await run_pool(store, lost_first, settled=2)
    assert messages(caplog, logging.WARNING) == [
        "stopped work on notification 1, sending nothing more: taken over"
    ]
    lost = next(r for r in caplog.records if r.getMessage().startswith("stopped work"))
    assert lost.outcome == "lost"
    assert messages(caplog, logging.ERROR) == [
        "store failed while finishing notification 2: disk I/O error"
    ]
    assert "notification 3 processed" in messages(caplog, logging.INFO)


async def test_processing_time_is_observed_per_notification() -> None:
    store, metrics = ScriptedStore(stored(1)), Metrics()
    await run_pool(store, succeed, metrics)
    count = metrics.registry.get_sample_value("alert_enricher_processing_seconds_count")
    total = metrics.registry.get_sample_value("alert_enricher_processing_seconds_sum")
    assert count == 1 and total is not None and 0 <= total < 1


async def test_a_lost_lease_waits_for_the_work_to_unwind_before_moving_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Whatever the work does as it stops (a send in flight) ends before the worker takes the
    next notification, and the log says which lease was lost."""
    store = ScriptedStore(stored(1), renew=False)
    events: list[str] = []

    class Recorder(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            events.append(record.getMessage())

    async def unwinds_slowly(stored: StoredNotification, lease: Lease) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)
            events.append("work unwound")
            raise

    recorder = Recorder()
    logging.getLogger("app.worker").addHandler(recorder)
    try:
        workers = pool(store, unwinds_slowly, count=1, lease_seconds=0.03)
        workers.start()
        async with asyncio.timeout(5):
            while len(events) < 2:
                await asyncio.sleep(0.01)
        await workers.stop()
    finally:
        logging.getLogger("app.worker").removeHandler(recorder)
    assert events[:2] == [
        "work unwound",
        "stopped work on notification 1, sending nothing more:"
        " the lease on notification 1 was lost",
    ]


@pytest.mark.parametrize(
    "failure", [StoreError("database is locked"), LeaseLostError("taken over")]
)
async def test_stopping_hands_work_back_after_it_unwinds_and_a_failed_hand_back_is_quiet(
    caplog: pytest.LogCaptureFixture, failure: Exception
) -> None:
    store = ScriptedStore(stored(1))
    store.fail_release = failure
    events: list[str] = []
    started = asyncio.Event()

    async def unwinds_slowly(stored: StoredNotification, lease: Lease) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)
            events.append("work unwound")
            raise

    workers = pool(store, unwinds_slowly, count=1, grace_seconds=0.01)
    workers.start()
    async with asyncio.timeout(5):
        await started.wait()
    await workers.stop()
    events.extend(c[0] for c in store.outcomes())
    assert events == ["work unwound", "release"], "handed back once the work has stopped"
    assert messages(caplog, logging.WARNING) + messages(caplog, logging.ERROR) == []


async def test_retention_purges_once_an_hour_however_often_the_workers_idle(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = ScriptedStore()
    store.purged = 3
    workers = pool(store, succeed, count=1, retention_seconds=1234)
    with caplog.at_level(logging.INFO, logger="app.worker"):
        workers.start()
        async with asyncio.timeout(5):
            while store.backlogs < 4:
                workers.wake()
                await asyncio.sleep(0.01)
        await workers.stop()
    assert store.calls.count(("purge", 1234)) == 1
    assert messages(caplog, logging.INFO) == ["purged 3 finished notifications past retention"]


async def test_failing_housekeeping_is_logged_saying_what_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = ScriptedStore()
    store.fail_backlog = True
    workers = pool(store, succeed, count=1)
    workers.start()
    async with asyncio.timeout(5):
        while store.backlogs < 2:
            workers.wake()
            await asyncio.sleep(0.01)
    await workers.stop()
    assert messages(caplog, logging.ERROR) == ["store housekeeping failed: database is locked"]


async def test_a_retry_and_a_give_up_carry_their_outcome_for_json_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = ScriptedStore(stored(1, attempts=1), stored(2, attempts=3))

    async def refused(stored: StoredNotification, lease: Lease) -> None:
        raise RetryLaterError("slack: 503")

    await run_pool(store, refused, settled=2, max_attempts=3)
    outcomes = {
        r.getMessage(): getattr(r, "outcome", None)
        for r in caplog.records
        if r.name == "app.worker"
    }
    assert outcomes == {
        "notification 1 will be retried in 5s: slack: 503": "retry",
        "giving up on notification 2 after 3 attempts: slack: 503": "failed",
    }
