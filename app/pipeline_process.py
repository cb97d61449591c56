"""The pipeline in a process of its own: `serve` answers webhooks in its process, and the workers,
the LLM lane and the Telegram poller run in a child (`python -m app.pipeline_child`) at nice +10.

In one process the webhook's answers waited behind the pipeline's Python (one interpreter lock,
one event loop): at 200 posts/s with the backlog being processed, ack p50 was 56 ms. Apart, each
has its own interpreter, and the webhook's process comes first for the CPU. On SQLite the
service's process also owns the database: the child's store calls are run on its connection
(app/store/remote.py), so nothing at the child's lower priority ever holds SQLite's write lock.

Protocol, over two pipes of the child's own (its stdin, stdout and stderr stay the service's, so
the console channel and the logs go where they always went):
- service to child: the Settings (a frame, app/child_process.py, of a pickle), then one message
  at a time:
  `w`, a notification was accepted (one worker looks now instead of at its next poll); `s` and a
  4-byte sequence number, the status is asked for; `r` and a frame, the answer to a store call;
  `e`, stop (the pipe stays open for the store calls of the child's shutdown).
- child to service: frames of JSON: {"ready": true} once the workers run,
  then {"seq": n, "alive": workers alive, "size": WORKERS, "metrics": text exposition} per `s`;
  and, on SQLite, frames of `c` and a store call (app/store/remote.py): the service's process owns
  the database and runs the child's store calls on its own connection.

The child ends when told to, its workers handing their claims back as a stopping service's do, or
when its input closes (the service died: nothing is left behind). If it dies,
the service starts another (1 s, then up to 30 s apart) and `/health` says degraded meanwhile;
what was accepted waits in the store. One that answers no status for a minute or so (its event
loop is stuck; asked every 10 s, each ask waiting 10 s) is killed, and so replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import os
import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.child_process import HEADER, child_env, frame, module_command, pipe_streams, read_frame
from app.config import Settings
from app.store.remote import MAX_CALL_BYTES, serve_call
from app.store.urls import backend_name

log = logging.getLogger(__name__)

NICENESS = 10
WAKE = b"w"
STATUS = b"s"
ANSWER = b"r"  # to the child: the answer to one of its store calls
END = b"e"  # to the child: stop (its workers hand their claims back through our store, then exit)
STORE_CALL = b"c"  # from the child: a frame that starts with it is a store call
COMMAND = module_command("app.pipeline_child")
START_SECONDS = 60.0  # building the runtime: the store's bound, prompts, runbooks
STOP_SECONDS = 20.0  # the workers' grace (10 s) and closing the clients
STATUS_SECONDS = 2.0
RESTART_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)
HEALTHY_RUN_SECONDS = 60.0  # a child that ran this long starts the backoff over
PING_SECONDS = 10.0  # the supervisor asks the child's status this often
WATCHDOG_SECONDS = 60.0  # and kills one that answered nothing for this long
MAX_FRAME_BYTES = MAX_CALL_BYTES + 1  # a store call or its answer, and its kind
CALLS_DRAIN_SECONDS = 5.0  # at stop: store calls still running, whose callers are gone
# Wakes stop queueing for a child that reads nothing past this much unsent (store answers, a
# claim's payload among them, count too: 4 KiB would have dropped wakes behind one of them).
MAX_WAKES_BUFFERED = 2**20


def store_served(settings: Settings) -> bool:
    """Whether the service's process runs the child's store calls: on SQLite, one writer."""
    return backend_name(settings.store_url) == "sqlite"


class PipelineStartError(RuntimeError):
    pass


@dataclass(frozen=True)
class PipelineStatus:
    alive: int
    size: int
    metrics: bytes


@dataclass
class _Child:
    process: asyncio.subprocess.Process
    requests: asyncio.WriteTransport
    reader: asyncio.Task[None]
    ready: asyncio.Future[None]


class PipelineProcess:
    """The service's side: starts the child, wakes it, asks its status, starts a new one after
    it died, and stops it."""

    def __init__(
        self, settings: Settings, command: Sequence[str] = COMMAND, store: Any = None
    ) -> None:
        """`store`: the one whose calls the child makes here (SQLite's), None when the child
        opens its own (PostgreSQL's)."""
        self._settings = settings
        self._command = list(command)
        self._store = store
        self._calls: set[asyncio.Task[None]] = set()
        self._child: _Child | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._seq = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        child = self._child
        return child.process.pid if child and child.process.returncode is None else None

    async def start(self) -> None:
        """The child started and its workers running; PipelineStartError if it could not."""
        self._child = await self._spawn()
        self._supervisor = asyncio.create_task(self._supervise(), name="pipeline-supervisor")
        self._supervisor.add_done_callback(_log_failure)

    def wake(self) -> None:
        child = self._child
        if child is None or child.requests.is_closing():
            return
        # A child not reading has had plenty: its workers also look every second on their own.
        if child.requests.get_write_buffer_size() < MAX_WAKES_BUFFERED:
            child.requests.write(WAKE)

    async def status(self, timeout: float = STATUS_SECONDS) -> PipelineStatus | None:  # noqa: ASYNC109
        """The child's workers and metrics; None if it is not running or does not answer."""
        child = self._child
        if child is None or not child.ready.done() or child.requests.is_closing():
            return None
        seq = next(self._seq)
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[seq] = answer
        try:
            child.requests.write(STATUS + HEADER.pack(seq))
            body = await asyncio.wait_for(answer, timeout)
            return PipelineStatus(
                int(body["alive"]), int(body["size"]), str(body["metrics"]).encode()
            )
        except (TimeoutError, KeyError, ValueError, TypeError):
            return None
        finally:
            self._waiting.pop(seq, None)

    async def stop(self) -> None:
        """Tell the child to stop (it hands its claims back and exits); kill it past 20 s."""
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        child, self._child = self._child, None
        if child is not None:
            await _end(child, STOP_SECONDS, graceful=True)
        if self._calls:  # the store closes after this: let what still runs on it finish
            await asyncio.wait(self._calls, timeout=CALLS_DRAIN_SECONDS)
            for call in self._calls:
                call.cancel()

    async def _spawn(self) -> _Child:
        child_reads, to_child = os.pipe()
        from_child, child_writes = os.pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                *self._command,
                str(child_reads),
                str(child_writes),
                pass_fds=(child_reads, child_writes),
                env=child_env(),
            )
        except BaseException:
            for fd in (to_child, from_child):
                os.close(fd)
            raise
        finally:
            os.close(child_reads)
            os.close(child_writes)
        reader, requests = await pipe_streams(from_child, to_child, MAX_FRAME_BYTES)
        requests.write(frame(pickle.dumps(self._settings)))
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        reading = asyncio.create_task(self._read(reader, ready, requests, process))
        child = _Child(process, requests, reading, ready)
        try:
            await asyncio.wait_for(asyncio.shield(ready), START_SECONDS)
        except (TimeoutError, PipelineStartError) as exc:
            await _end(child, 1.0)
            code = process.returncode
            raise PipelineStartError(
                f"the pipeline process did not start (exit code {code})"
                if code is not None
                else f"the pipeline process was not ready within {START_SECONDS:g}s"
            ) from exc
        except BaseException:  # cancelled: the service stops while this one starts
            await _end(child, 1.0)
            raise
        log.info("pipeline process %d running at nice +%d", process.pid, NICENESS)
        return child

    async def _read(
        self,
        reader: asyncio.StreamReader,
        ready: asyncio.Future[None],
        requests: asyncio.WriteTransport,
        process: asyncio.subprocess.Process,
    ) -> None:
        """The child's frames, until its output closes. A child out of protocol is killed: with
        nobody reading it, it would wait on its store calls for good (and so be replaced)."""
        try:
            while True:
                data = await read_frame(reader, MAX_FRAME_BYTES)
                if data[:1] == STORE_CALL and self._store is not None:
                    self._serve(data[1:], requests)
                    continue
                body = json.loads(data)
                if body.get("ready") and not ready.done():
                    ready.set_result(None)
                waiting = self._waiting.get(body.get("seq", -1))
                if waiting is not None and not waiting.done():
                    waiting.set_result(body)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except (ValueError, AttributeError) as exc:
            log.error("the pipeline process answered out of protocol, killing it: %s", exc)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        finally:
            if not ready.done():
                ready.set_exception(PipelineStartError("the pipeline process ended"))
                ready.exception()  # retrieved: a start that timed out first never looks
            for waiting in self._waiting.values():  # no answer is coming: none, at once
                if not waiting.done():
                    waiting.set_result({})

    def _serve(self, call: bytes, requests: asyncio.WriteTransport) -> None:
        """Run a store call of the child's, and send it the answer; calls run side by side."""

        async def serve() -> None:
            answer = await serve_call(self._store, call)
            if not requests.is_closing():  # a child that died gets no answer
                requests.write(ANSWER + frame(answer))

        task = asyncio.create_task(serve())
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    async def _supervise(self) -> None:
        """A new child after one died, sooner after a long run than after a quick failure."""
        failures = 0
        while not self._stopping:
            child = self._child
            assert child is not None
            started = time.monotonic()
            code = await self._watched(child)
            await _end(child, 1.0)
            self._child = None
            if self._stopping:
                return
            failures = 1 if time.monotonic() - started > HEALTHY_RUN_SECONDS else failures + 1
            delay = _backoff(failures)
            log.error("the pipeline process exited (code %s); a new one starts in %gs", code, delay)
            await asyncio.sleep(delay)
            while self._child is None and not self._stopping:
                try:
                    self._child = await self._spawn()
                    self.restarts += 1
                except (PipelineStartError, OSError) as exc:
                    failures += 1
                    delay = _backoff(failures)
                    log.error("%s; trying again in %gs", exc, delay)
                    await asyncio.sleep(delay)

    async def _watched(self, child: _Child) -> int | None:
        """The child's exit code, once it exits. One that answers no status for
        WATCHDOG_SECONDS has a stuck event loop (nothing would page): it is killed."""
        exited = asyncio.ensure_future(child.process.wait())
        answered = time.monotonic()
        try:
            while not (await asyncio.wait({exited}, timeout=PING_SECONDS))[0]:
                if await self.status(timeout=PING_SECONDS) is not None:
                    answered = time.monotonic()
                elif time.monotonic() - answered > WATCHDOG_SECONDS:
                    log.error(
                        "the pipeline process %d has answered nothing for %gs: killing it",
                        child.process.pid,
                        WATCHDOG_SECONDS,
                    )
                    with contextlib.suppress(ProcessLookupError):
                        child.process.kill()
                    answered = math.inf  # once
            return exited.result()
        finally:
            exited.cancel()


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.critical("the pipeline's supervisor stopped", exc_info=task.exception())


def _backoff(failures: int) -> float:
    """1 s after the first failure in a row, then 2, 5, 10 and 30 s."""
    return RESTART_SECONDS[min(failures, len(RESTART_SECONDS)) - 1]


async def _end(child: _Child, timeout: float, graceful: bool = False) -> None:  # noqa: ASYNC109
    """Tell the child to stop (`graceful`: its store calls are still answered meanwhile), else
    close its input, and wait for it; kill it if it outlives `timeout`."""
    if graceful and not child.requests.is_closing():
        child.requests.write(END)
    else:
        child.requests.close()
    try:
        await asyncio.wait_for(child.process.wait(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            child.process.kill()
        await child.process.wait()
    child.requests.close()
    child.reader.cancel()
    await asyncio.gather(child.reader, return_exceptions=True)
