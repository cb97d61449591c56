"""The pipeline process's store (app/store/remote.py): calls made in one process and run on the
SQLite store the webhook's process owns. Here both ends share an event loop, joined by a link that
carries bytes only and answers later, as the pipes between the processes do."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import pickle
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.store import SQLiteStore, Store, remote
from app.store.base import Claim, LeaseLostError, StoreError
from app.store.remote import REMOTE_CALLS, RemoteStore, serve_call


class Link:
    """The service's side of the pipes: each call run on the store, its answer sent back."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.remote = RemoteStore(self.send)
        self.sent: list[bytes] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.answering = True

    def send(self, call: bytes) -> None:
        self.sent.append(call)
        if self.answering:
            task = asyncio.create_task(self._deliver(call))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, call: bytes) -> None:
        self.remote.answered(await serve_call(self.store, call))


@pytest.fixture
async def link(tmp_path: Path) -> AsyncIterator[Link]:
    store = await SQLiteStore.open(f"sqlite:///{tmp_path}/store.db")
    yield Link(store)
    with contextlib.suppress(StoreError):  # closed already by the test of a failing store
        await store.close()


async def test_a_notification_claimed_renewed_and_finished_over_the_link_is_the_stores_own(
    link: Link,
) -> None:
    accepted = await link.store.accept("k", "group", '{"x": 1}', 600)
    taken = await link.remote.claim("worker-1", 30)
    assert taken is not None and taken.id == accepted.id and taken.payload == '{"x": 1}'
    assert taken.claim == Claim(accepted.id, "worker-1", 1)
    assert await link.remote.renew(taken.claim, 30) is True
    assert await link.store.backlog() == 1
    await link.remote.finish(taken.claim)
    assert await link.store.backlog() == 0
    assert await link.remote.claim("worker-1", 30) is None
    assert len(link.sent) == 4


async def test_a_claim_taken_over_raises_lease_lost_in_the_calling_process(link: Link) -> None:
    accepted = await link.store.accept("k", "group", "{}", 600)
    stale = Claim(accepted.id, "worker-1", 99)
    with pytest.raises(LeaseLostError, match=f"notification {accepted.id}: claim taken over"):
        await link.remote.finish(stale)


async def test_a_store_that_fails_fails_the_caller_with_store_error(link: Link) -> None:
    await link.store.close()
    with pytest.raises(StoreError, match="closed"):
        await link.remote.backlog()


async def test_only_store_calls_travel(link: Link) -> None:
    with pytest.raises(AttributeError):
        link.remote.execute  # noqa: B018 - not a store call: no such attribute
    forged = pickle.dumps((7, "close", (), {}))  # the service's store is its own to close
    answer = pickle.loads(await serve_call(link.store, forged))
    assert answer == (7, False, ("store", "no store call 'close'"))
    assert await link.store.backlog() == 0, "the store is still open"


async def test_a_call_that_is_not_one_is_answered_as_a_store_failure(link: Link) -> None:
    seq, ok, (kind, text) = pickle.loads(await serve_call(link.store, b"not a pickle"))
    assert (seq, ok, kind) == (0, False, "store") and text.startswith("UnpicklingError")


async def test_a_call_too_big_for_the_pipe_fails_before_it_is_sent(
    link: Link, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(remote, "MAX_CALL_BYTES", 1000)
    with pytest.raises(StoreError, match="over the 1000 a call may be"):
        await link.remote.accept("k", "group", "x" * 2000, 600)
    assert link.sent == [] and await link.store.backlog() == 0


async def test_an_answer_too_big_for_the_pipe_is_a_store_failure_of_its_call(
    link: Link, monkeypatch: pytest.MonkeyPatch
) -> None:
    await link.store.accept("k", "group", "x" * 2000, 600)
    monkeypatch.setattr(remote, "MAX_CALL_BYTES", 1000)
    with pytest.raises(StoreError, match="over 1000"):
        await link.remote.claim("worker-1", 30)


async def test_a_call_whose_answer_never_comes_fails_in_its_time(link: Link) -> None:
    link.answering = False
    silent = RemoteStore(link.send, timeout=0.05)
    with pytest.raises(StoreError, match=r"backlog: no answer from the service in 0\.05s"):
        await silent.backlog()


def test_every_store_call_but_watch_and_close_can_travel() -> None:
    calls = {
        name
        for name, member in inspect.getmembers(Store)
        if not name.startswith("_") and inspect.iscoroutinefunction(member)
    }
    assert calls - {"watch", "close"} == REMOTE_CALLS


async def test_an_exception_outside_the_stores_contract_reaches_the_caller_as_a_store_failure(
    link: Link,
) -> None:
    class Odd(Exception):  # pickles, but would not unpickle: two arguments to rebuild it
        def __init__(self, first: str, second: str) -> None:
            super().__init__(f"{first} {second}")

    class Failing:
        async def backlog(self) -> int:
            raise Odd("the disk", "is on fire")

    link.store = Failing()
    with pytest.raises(StoreError, match=r"^Odd: the disk is on fire$"):
        await link.remote.backlog()


async def test_once_the_service_is_gone_waiting_and_later_calls_fail_at_once(link: Link) -> None:
    link.answering = False  # the service died with the call on its way
    waiting = asyncio.create_task(link.remote.backlog())
    await asyncio.sleep(0)
    link.remote.gone("the service's process is gone")
    with pytest.raises(StoreError, match="the service's process is gone"):
        await waiting
    with pytest.raises(StoreError, match="the service's process is gone"):
        await link.remote.ping()
    assert len(link.sent) == 1, "nothing more is sent to a service that is gone"


async def test_an_answer_to_a_call_whose_caller_gave_up_is_dropped(link: Link) -> None:
    link.answering = False
    call = asyncio.create_task(link.remote.backlog())
    await asyncio.sleep(0)
    call.cancel()
    await asyncio.gather(call, return_exceptions=True)
    link.remote.answered(await serve_call(link.store, link.sent[0]))  # late: nobody waits
    link.answering = True
    assert await link.remote.backlog() == 0


async def test_the_pipeline_process_watches_nothing_and_closes_nothing(link: Link) -> None:
    watching = asyncio.create_task(link.remote.watch(lambda: None))
    await asyncio.sleep(0.05)
    assert not watching.done(), "the service wakes the workers over the pipe instead"
    watching.cancel()
    await link.remote.close()
    assert await link.store.backlog() == 0, "the service's store is still open"
    assert link.sent == []
