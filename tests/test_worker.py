import asyncio
from pathlib import Path

from app.delivery import Dispatcher
from app.metrics import Metrics
from app.models import DiagnosisSource, EnrichedNotification
from app.sqlite_store import SQLiteStore
from app.store import StoredNotification
from app.worker import Pipeline, WorkerPool, backoff
from tests.fakes import RecordingNotifier, fixture_text


class CountingEnricher:
    def __init__(self) -> None:
        self.calls = 0

    async def enrich(self, payload, notification_id=None, kind=None) -> EnrichedNotification:
        self.calls += 1
        return EnrichedNotification(
            notification_id=notification_id,
            group_id=payload.group_id,
            status=payload.status,
            title="t",
            severity="critical",
            source=DiagnosisSource(kind="none"),
        )


async def wait_until(condition, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(0.02)


def pool(store, process, **kw) -> WorkerPool:
    options = dict(
        count=2, lease_seconds=30, max_attempts=3, retention_seconds=3600, grace_seconds=1
    )
    options.update(kw)
    return WorkerPool(store, process, Metrics(), **options)


async def test_work_left_in_the_store_is_processed_once_after_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    store = await SQLiteStore.open(url)
    payload = fixture_text("alertmanager-0.25-firing_apidown_binance.json")
    await store.accept("k", "g", payload, 600)
    await store.close()  # the process "died" before any worker ran

    store = await SQLiteStore.open(url)
    notifier, enricher = RecordingNotifier(), CountingEnricher()
    pipeline = Pipeline(store, enricher, Dispatcher([notifier], store, Metrics()))
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
    pipeline = Pipeline(store, enricher, Dispatcher([good, flaky], store, Metrics()))

    first = await store.claim("w", 30)
    try:
        await pipeline.run(first)
    except Exception as exc:
        assert "flaky: simulated outage" in str(exc)
    await store.retry_later(first.id, "w", "flaky", delay=0)
    second = await store.claim("w", 30)
    assert second.enrichment is not None
    await pipeline.run(second)
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
    pipeline = Pipeline(store, CountingEnricher(), Dispatcher([broken, good], store, Metrics()))
    stored = await store.claim("w", 30)
    await pipeline.run(stored)  # no retry: a permanent error is recorded, not repeated
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

    async def explode(stored: StoredNotification) -> None:
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

    async def slow(stored: StoredNotification) -> None:
        started.set()
        await asyncio.sleep(60)

    workers = pool(store, slow, grace_seconds=0.1)
    workers.start()
    await started.wait()
    await workers.stop()
    again = await store.claim("next-process", 30)
    await store.close()
    assert again is not None and again.attempts == 1
