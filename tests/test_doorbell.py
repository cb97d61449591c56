"""The doorbell wakes one idle worker per ring, and keeps a ring nobody was idle to hear."""

from __future__ import annotations

import asyncio

from app.doorbell import Doorbell


async def waiters(bell: Doorbell, n: int, poll: float = 5) -> list[asyncio.Task[None]]:
    tasks = [asyncio.create_task(bell.wait(poll)) for _ in range(n)]
    await asyncio.sleep(0)
    assert bell.idle == n
    return tasks


async def test_one_ring_wakes_exactly_one_idle_worker() -> None:
    bell = Doorbell(limit=4)
    tasks = await waiters(bell, 3)
    bell.ring()
    await asyncio.sleep(0.01)
    assert [t.done() for t in tasks] == [True, False, False], "the longest idle goes first"
    bell.ring_all()
    await asyncio.gather(*tasks)
    assert bell.idle == 0


async def test_a_ring_with_nobody_idle_is_kept_for_the_next_worker() -> None:
    bell = Doorbell(limit=2)
    for _ in range(5):
        bell.ring()
    started = asyncio.get_running_loop().time()
    await bell.wait(5)
    await bell.wait(5)
    assert asyncio.get_running_loop().time() - started < 0.5, "two kept rings: no waiting"
    third = asyncio.create_task(bell.wait(5))
    await asyncio.sleep(0.05)
    assert not third.done(), "no more rings are kept than there are workers"
    bell.ring()
    await third


async def test_a_worker_that_stops_waiting_leaves_no_trace() -> None:
    bell = Doorbell(limit=2)
    await bell.wait(0.01)
    assert bell.idle == 0
    bell.ring()  # nobody waits: the ring is kept rather than lost on a stale waiter
    await asyncio.wait_for(bell.wait(5), 0.5)
    cancelled = asyncio.create_task(bell.wait(5))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    assert bell.idle == 0
