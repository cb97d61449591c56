import asyncio
from pathlib import Path

import pytest

from app.delivery import Dispatcher
from app.lease import Lease
from app.metrics import Metrics
from app.models import DiagnosisSource, EnrichedNotification
from app.notifiers.base import Progress
from app.pipeline import Pipeline, RetryLaterError
from app.store import SQLiteStore, StoredNotification
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

    async def diagnose(self, payload, contexts):
        return None, DiagnosisSource(kind="none")

    def assemble(
        self, payload, kind, contexts, diagnosis, source, *, notification_id=None, known=None
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


async def test_shutdown_hands_unfinished_work_back(tmp_path: Path) -> None:
    store = await SQLiteStore.open(f"sqlite:///{tmp_path}/s.db")
    await store.accept("k", "g", "{}", 600)
    started = asyncio.Event()

    async def slow(stored: StoredNotification, lease: Lease) -> None:
        started.set()
        await asyncio.sleep(60)

    workers = pool(store, slow, grace_seconds=0.1)
    workers.start()
    await started.wait()
    await workers.stop()
    again = await store.claim("next-process", 30)
    await store.close()
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
