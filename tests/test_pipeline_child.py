"""The pipeline's process reading the service's messages (app/pipeline_child.py), in this process
with a stream fed by hand; tests/e2e/test_e2e_pipeline_process.py runs the real child under
`serve`."""

from __future__ import annotations

import asyncio
import pickle
from types import SimpleNamespace
from typing import Any

import pytest

from app.child_process import frame
from app.pipeline_child import _serve
from app.pipeline_process import ANSWER, END, WAKE
from app.store.base import StoreError
from app.store.remote import RemoteStore


class Child:
    """`_serve` reading a stream the test writes to, with a RemoteStore whose calls it records."""

    def __init__(self) -> None:
        self.reader = asyncio.StreamReader()
        self.calls: list[bytes] = []
        self.remote = RemoteStore(self.calls.append)
        self.woken = 0
        self.stop = asyncio.Event()
        workers = SimpleNamespace(wake=self._wake)
        runtime: Any = SimpleNamespace(workers=workers)
        self.task = asyncio.create_task(
            _serve(self.reader, runtime, lambda body: None, self.remote, self.stop)
        )

    def _wake(self) -> None:
        self.woken += 1

    def answer(self, seq: int, value: Any) -> None:
        self.reader.feed_data(ANSWER + frame(pickle.dumps((seq, True, value))))

    async def call(self) -> asyncio.Task[Any]:
        call = asyncio.create_task(self.remote.backlog())
        while not self.calls:
            await asyncio.sleep(0)
        return call


async def test_a_wake_wakes_one_worker_each() -> None:
    child = Child()
    child.reader.feed_data(WAKE * 3)
    child.reader.feed_eof()
    await asyncio.wait_for(child.task, 1)
    assert child.woken == 3


async def test_told_to_stop_it_reads_on_for_the_answers_to_its_last_store_calls() -> None:
    child = Child()
    release = await child.call()  # a worker handing its claim back during the shutdown
    child.reader.feed_data(END)
    await asyncio.wait_for(child.stop.wait(), 1)
    child.answer(1, 0)
    assert await asyncio.wait_for(release, 1) == 0
    assert not child.task.done()
    child.reader.feed_eof()
    await asyncio.wait_for(child.task, 1)


async def test_when_the_service_is_gone_its_store_calls_fail_at_once() -> None:
    child = Child()
    waiting = await child.call()
    child.reader.feed_eof()
    with pytest.raises(StoreError, match="the service's process is gone"):
        await asyncio.wait_for(waiting, 1)
    assert child.stop.is_set() and child.remote.is_gone


@pytest.mark.parametrize(
    "garbage", [b"x", ANSWER + frame(b"not a pickle")], ids=["unknown message", "bad answer"]
)
async def test_a_message_out_of_protocol_ends_it_and_fails_its_store_calls(garbage: bytes) -> None:
    child = Child()
    waiting = await child.call()
    child.reader.feed_data(garbage)
    await asyncio.wait_for(child.task, 1)
    assert child.stop.is_set()
    with pytest.raises(StoreError, match="stopped reading the service"):
        await asyncio.wait_for(waiting, 1)
