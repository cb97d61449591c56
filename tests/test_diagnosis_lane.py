"""When a page waits for the LLM lane, and when it goes at once (app/diagnosis_lane.py)."""

import time

from app.diagnosis_lane import DiagnosisLane
from app.metrics import Metrics


def lane(concurrency: int) -> DiagnosisLane:
    # wait_for decides from the lane's own counts; no store or model is reached.
    return DiagnosisLane(
        None, None, Metrics(), concurrency=concurrency, max_queue_seconds=120, lease_seconds=50
    )


async def waited(subject: DiagnosisLane, seconds: float = 0.2) -> bool:
    started = time.monotonic()
    answered = await subject.wait_for(1, seconds)
    assert answered is False, "nothing answers in these tests"
    return time.monotonic() - started >= seconds * 0.9


async def test_a_page_whose_diagnosis_starts_at_once_waits_for_it() -> None:
    subject = lane(concurrency=2)
    subject.queued()
    assert await waited(subject)


async def test_before_any_answer_a_page_behind_a_full_lane_goes_at_once() -> None:
    subject = lane(concurrency=2)
    for _ in range(3):
        subject.queued()
    assert not await waited(subject)


async def test_a_page_never_waits_when_no_time_is_left() -> None:
    subject = lane(concurrency=2)
    subject.queued()
    started = time.monotonic()
    assert await subject.wait_for(1, 0) is False
    assert time.monotonic() - started < 0.05
