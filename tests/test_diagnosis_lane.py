"""When a page waits for the LLM lane, and when it goes at once (app/diagnosis_lane.py)."""

import asyncio
import logging
import time

import pytest

from app.diagnosis_lane import ANSWER_POLL_SECONDS, DiagnosisLane
from app.metrics import Metrics
from app.store import StoreError


class Answers:
    """The store as the lane sees it: whether a page's diagnosis is answered; claims fail."""

    def __init__(self, *answered: int, failing: bool = False) -> None:
        self.answered = set(answered)
        self.failing = failing
        self.asked: list[int] = []
        self.claims = 0

    async def claim_diagnosis(self, owner: str, lease_seconds: float) -> None:
        self.claims += 1
        raise StoreError("PostgreSQL: no connection within 2s")

    async def diagnosis_answered(self, notification_id: int) -> bool:
        self.asked.append(notification_id)
        if self.failing:
            raise StoreError("PostgreSQL: no connection within 2s")
        return notification_id in self.answered


def lane(concurrency: int, store: Answers | None = None) -> DiagnosisLane:
    # admit decides from the lane's own counts; no model is reached.
    return DiagnosisLane(
        store or Answers(),
        None,
        Metrics(),
        concurrency=concurrency,
        max_queue_seconds=120,
        lease_seconds=50,
    )


def test_before_any_answer_only_a_diagnosis_that_starts_at_once_is_waited_for() -> None:
    subject = lane(concurrency=2)
    assert subject.admit(0.2) and subject.admit(0.2), "two free slots"
    assert not subject.admit(0.2), "behind a full lane"
    assert not subject.admit(60), "no answer time known yet: only a free slot counts"


def test_pages_deciding_together_count_each_other_before_they_commit() -> None:
    subject = lane(concurrency=1)
    assert subject.admit(1)
    assert not subject.admit(1), "the first is counted before its queueing commits"
    subject.queued()
    assert not subject.admit(1)


def test_a_withdrawn_admission_frees_its_place() -> None:
    subject = lane(concurrency=1)
    assert subject.admit(1)
    subject.withdrawn()
    assert subject.admit(1)


def test_no_time_left_means_no_wait() -> None:
    subject = lane(concurrency=2)
    assert not subject.admit(0)
    assert not subject.admit(-1)


async def test_waiting_for_an_answer_that_never_comes_ends_at_the_deadline() -> None:
    subject = lane(concurrency=2)
    started = time.monotonic()
    assert await subject.wait_for(1, 0.2) is False
    assert 0.18 <= time.monotonic() - started < 1.0


async def test_a_page_never_waits_when_no_time_is_left() -> None:
    subject = lane(concurrency=2)
    started = time.monotonic()
    assert await subject.wait_for(1, 0) is False
    assert time.monotonic() - started < 0.05


async def test_an_answer_from_another_replica_ends_the_wait_of_its_page_only() -> None:
    """The store's NOTIFY brings another replica's answer: its page takes it at once instead of
    waiting out PAGE_WITHIN_SECONDS; a page waiting for another diagnosis keeps waiting."""
    subject = lane(concurrency=2)
    started = time.monotonic()
    waiting = asyncio.create_task(subject.wait_for(7, 10))
    other = asyncio.create_task(subject.wait_for(8, 0.5))
    await asyncio.sleep(0)
    subject.answered(7)
    subject.answered(99)  # nobody here waits for it: nothing happens
    assert await waiting is True
    assert time.monotonic() - started < 1.0
    assert await other is False


async def test_a_page_whose_answers_word_was_lost_finds_the_answer_in_the_store() -> None:
    """Another replica answered while this one's LISTEN was reconnecting: no word comes, and the
    page asks the store once a second instead of waiting out PAGE_WITHIN_SECONDS."""
    store = Answers(7)
    subject = lane(concurrency=2, store=store)
    started = time.monotonic()
    assert await subject.wait_for(7, 30) is True
    assert ANSWER_POLL_SECONDS * 0.9 <= time.monotonic() - started < ANSWER_POLL_SECONDS + 1
    assert store.asked == [7]


async def test_a_store_that_cannot_say_leaves_the_page_waiting_until_its_deadline() -> None:
    store = Answers(7, failing=True)
    subject = lane(concurrency=2, store=store)
    started = time.monotonic()
    assert await subject.wait_for(7, 2.5) is False
    assert 2.4 <= time.monotonic() - started < 3.5
    assert store.asked == [7, 7, 7], "after 1 s, 2 s and at the deadline"


async def test_a_store_down_during_a_poll_of_every_lane_worker_is_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = Answers()
    subject = lane(concurrency=3, store=store)
    subject.start()
    try:
        async with asyncio.timeout(5):
            while store.claims < 9:
                subject.wake()
                await asyncio.sleep(0.01)
    finally:
        await subject.stop()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "cannot claim a diagnosis from the store: PostgreSQL: no connection within 2s"
    ]
