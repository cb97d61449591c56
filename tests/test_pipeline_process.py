"""The pipeline's process (app/pipeline_process.py), driven by the service's side: started with the
service's settings, woken per accepted notification, asked for its status, started again after it
died, and stopped by closing its input. The child here is a stand-in speaking the same protocol;
tests/e2e/test_e2e_pipeline_process.py runs the real one under `serve`."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from app import pipeline_process
from app.config import Settings
from app.pipeline_process import PipelineProcess, PipelineStartError, PipelineStatus
from app.store import SQLiteStore

# Notes in `log` the settings' WORKERS and every wake; answers a status with 3 of 4 workers alive.
# Modes: "exit" ends before it is ready, "slow" is never ready (and notes its pid), "mute" never
# answers a status, "crash" exits when asked one, "store" asks the service's store for its backlog
# and for a call that is no store's, and notes the answers; "garble" sends a frame that is not JSON.
STAND_IN = textwrap.dedent(
    """
    import json, os, pickle, struct, sys
    log, mode, requests, answers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    header = struct.Struct(">I")
    def read(n):
        data = b""
        while len(data) < n:
            chunk = os.read(requests, n - len(data))
            if not chunk:
                sys.exit(0)
            data += chunk
        return data
    def send(body):
        out = json.dumps(body).encode()
        os.write(answers, header.pack(len(out)) + out)
    settings = pickle.loads(read(header.unpack(read(4))[0]))
    with open(log, "a") as f:
        f.write(f"workers={settings.workers}\\n")
    if mode == "exit":
        sys.exit(3)
    if mode == "slow":
        with open(log, "a") as f:
            f.write(f"pid={os.getpid()}\\n")
        read(1)
    send({"ready": True})
    if mode == "garble":
        os.write(answers, header.pack(8) + b"not json")
    if mode == "store":
        for seq, method in ((1, "backlog"), (2, "execute")):
            call = b"c" + pickle.dumps((seq, method, (), {}))
            os.write(answers, header.pack(len(call)) + call)
    while True:
        kind = read(1)
        if kind == b"w":
            with open(log, "a") as f:
                f.write("wake\\n")
        elif kind == b"s":
            (seq,) = header.unpack(read(4))
            if mode == "crash":
                sys.exit(5)
            if mode != "mute":
                send({"seq": seq, "alive": 3, "size": 4, "metrics": "x 1\\n"})
        elif kind == b"r":
            seq, ok, value = pickle.loads(read(header.unpack(read(4))[0]))
            with open(log, "a") as f:
                shown = value if ok else ":".join(value)
                f.write(f"answer{seq}={ok}:{shown}\\n".replace(" ", "_"))
        elif kind == b"e":
            with open(log, "a") as f:
                f.write("end\\n")
            sys.exit(0)
    """
)


def lines(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


async def until(condition: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.fixture
async def pipeline(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> AsyncIterator[Callable[..., PipelineProcess]]:
    made: list[PipelineProcess] = []

    def make(mode: str = "serve", store: Any = None) -> PipelineProcess:
        command = [sys.executable, "-c", STAND_IN, str(tmp_path / "child.log"), mode]
        made.append(PipelineProcess(make_settings(workers=7), command, store=store))
        return made[-1]

    yield make
    for process in made:
        await process.stop()


async def test_the_child_gets_the_services_settings_and_one_wake_per_notification(
    pipeline: Callable[..., PipelineProcess], tmp_path: Path
) -> None:
    process = pipeline()
    await process.start()
    for _ in range(3):
        process.wake()
    log = tmp_path / "child.log"
    await until(lambda: lines(log).count("wake") == 3)
    assert lines(log)[0] == "workers=7"


async def test_the_childs_store_calls_run_on_the_services_store_and_only_store_calls(
    pipeline: Callable[..., PipelineProcess], tmp_path: Path
) -> None:
    store = await SQLiteStore.open(f"sqlite:///{tmp_path}/store.db")
    await store.accept("k", "group", "{}", 600)
    process = pipeline("store", store=store)
    await process.start()
    await until(lambda: len([x for x in lines(tmp_path / "child.log") if "answer" in x]) == 2)
    await process.stop()
    await store.close()
    answers = [x for x in lines(tmp_path / "child.log") if x.startswith("answer")]
    assert sorted(answers) == [
        "answer1=True:1",
        "answer2=False:store:no_store_call_'execute'",
    ]


async def test_the_status_is_the_childs_workers_and_metrics(
    pipeline: Callable[..., PipelineProcess],
) -> None:
    process = pipeline()
    await process.start()
    statuses = await asyncio.gather(*(process.status() for _ in range(3)))
    assert statuses == [PipelineStatus(alive=3, size=4, metrics=b"x 1\n")] * 3


async def test_a_child_that_does_not_answer_has_no_status(
    pipeline: Callable[..., PipelineProcess],
) -> None:
    process = pipeline("mute")
    await process.start()
    began = time.monotonic()
    assert await process.status(timeout=0.3) is None
    assert time.monotonic() - began < 1


async def test_a_child_that_died_is_replaced_and_the_new_one_answers(
    pipeline: Callable[..., PipelineProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline_process, "RESTART_SECONDS", (0.05,))
    process = pipeline()
    await process.start()
    first = process.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    await until(lambda: process.pid not in (None, first))
    assert process.restarts == 1
    assert await process.status() == PipelineStatus(3, 4, b"x 1\n")


async def test_a_child_out_of_protocol_is_killed_and_replaced(
    pipeline: Callable[..., PipelineProcess],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(pipeline_process, "RESTART_SECONDS", (0.05,))
    process = pipeline("garble")
    await process.start()
    await until(lambda: process.restarts >= 1)
    assert "answered out of protocol, killing it" in caplog.text
    assert "exited (code -9)" in caplog.text


async def test_stopping_tells_the_child_to_end_and_it_exits(
    pipeline: Callable[..., PipelineProcess], tmp_path: Path
) -> None:
    process = pipeline()
    await process.start()
    pid = process.pid
    assert pid is not None
    began = time.monotonic()
    await process.stop()
    assert time.monotonic() - began < 2, "it exits at once, not when killed"
    assert lines(tmp_path / "child.log")[-1] == "end"
    assert process.pid is None and await process.status() is None
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # exited and reaped
    process.wake()  # after stop: nothing to wake, and no error


async def test_a_child_that_ends_before_it_is_ready_fails_the_start(
    pipeline: Callable[..., PipelineProcess], tmp_path: Path
) -> None:
    with pytest.raises(PipelineStartError, match=r"did not start \(exit code 3\)"):
        await pipeline("exit").start()
    assert lines(tmp_path / "child.log") == ["workers=7"]


async def test_a_child_that_answers_nothing_for_a_while_is_killed_and_replaced(
    pipeline: Callable[..., PipelineProcess],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for name, seconds in (("PING_SECONDS", 0.05), ("WATCHDOG_SECONDS", 0.3)):
        monkeypatch.setattr(pipeline_process, name, seconds)
    monkeypatch.setattr(pipeline_process, "RESTART_SECONDS", (0.05,))
    process = pipeline("mute")  # alive, but its loop never answers: as if stuck
    await process.start()
    first = process.pid
    await until(lambda: process.restarts >= 1)
    assert process.pid != first
    assert f"the pipeline process {first} has answered nothing for 0.3s: killing it" in caplog.text


async def test_a_child_that_ends_while_asked_for_its_status_answers_none_at_once(
    pipeline: Callable[..., PipelineProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline_process, "RESTART_SECONDS", (30.0,))
    process = pipeline("crash")
    await process.start()
    began = time.monotonic()
    assert await process.status(timeout=5) is None
    assert time.monotonic() - began < 2, "not at the end of its timeout"


async def test_a_child_still_starting_when_the_service_stops_is_ended_too(
    pipeline: Callable[..., PipelineProcess], tmp_path: Path
) -> None:
    process = pipeline("slow")
    starting = asyncio.create_task(process.start())
    log = tmp_path / "child.log"
    await until(lambda: any(line.startswith("pid=") for line in lines(log)))
    pid = int(next(line for line in lines(log) if line.startswith("pid="))[4:])
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # ended and reaped, not left running
