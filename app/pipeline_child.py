"""The pipeline's process (`python -m app.pipeline_child`, started by app/pipeline_process.py):
the service's runtime built from the Settings it is sent (on SQLite, with the service's store
through app/store/remote.py), its workers, LLM lane and Telegram poller running, answering the
service's messages until it is told to stop or its input closes."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pickle
import signal
import sys
from collections.abc import Callable
from typing import Any, cast

from app.child_process import HEADER, frame, pipe_streams, read_frame
from app.logs import configure_logging
from app.pipeline_process import (
    ANSWER,
    END,
    MAX_FRAME_BYTES,
    NICENESS,
    STATUS,
    STORE_CALL,
    WAKE,
    store_served,
)
from app.runtime import Runtime, build_runtime
from app.store.base import Store, StoreError
from app.store.remote import RemoteStore

log = logging.getLogger(__name__)
Send = Callable[[dict[str, Any]], None]


async def run(requests_fd: int, answers_fd: int) -> None:
    """Build the runtime from the service's Settings, run the workers, answer until input ends."""
    reader, answers = await pipe_streams(requests_fd, answers_fd, MAX_FRAME_BYTES)

    def send(body: dict[str, Any]) -> None:
        answers.write(frame(json.dumps(body).encode()))

    try:
        settings = pickle.loads(await read_frame(reader, MAX_FRAME_BYTES))  # noqa: S301 - our parent
    except asyncio.IncompleteReadError:
        return  # the service went away before it said anything
    configure_logging(settings.log_level, settings.log_format, settings.secret_values())
    remote = None
    if store_served(settings):
        remote = RemoteStore(lambda call: answers.write(frame(STORE_CALL + call)))
    runtime = await build_runtime(
        settings, store=cast(Store, remote) if remote is not None else None
    )
    stop = asyncio.Event()
    reading = asyncio.create_task(_serve(reader, runtime, send, remote, stop))
    try:
        runtime.start()
        send({"ready": True})
        await stop.wait()
    finally:
        try:
            if remote is not None and remote.is_gone:
                # No store to record what they send: stop sending at once, not after a grace.
                await runtime.workers.stop(grace=0)
            await runtime.close()  # the workers' last store calls are answered meanwhile
        finally:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
            if remote is not None:
                remote.gone("the service is stopping")
            answers.close()


async def _serve(
    reader: asyncio.StreamReader,
    runtime: Runtime,
    send: Send,
    remote: RemoteStore | None,
    stop: asyncio.Event,
) -> None:
    """The service's messages until its pipe closes; `stop` is set when told to end, and reading
    goes on after that for the answers to the store calls of the runtime's shutdown."""
    answering: set[asyncio.Task[None]] = set()

    async def answer(seq: int) -> None:
        workers = runtime.workers
        # Workers whose store fails claim nothing: not alive, as far as pages go.
        alive = workers.alive if await _store_ok(runtime) else 0
        metrics = runtime.metrics.exposition("pipeline").decode()
        send({"seq": seq, "alive": alive, "size": workers.size, "metrics": metrics})

    try:
        while True:
            kind = await reader.readexactly(1)
            if kind == WAKE:
                runtime.workers.wake()
            elif kind == STATUS:
                (seq,) = HEADER.unpack(await reader.readexactly(HEADER.size))
                task = asyncio.create_task(answer(seq))  # wakes are read meanwhile
                answering.add(task)
                task.add_done_callback(answering.discard)
            elif kind == ANSWER and remote is not None:
                remote.answered(await read_frame(reader, MAX_FRAME_BYTES))
            elif kind == END:
                stop.set()
            else:
                raise ValueError(f"unknown message {kind!r} from the service")
    except (asyncio.IncompleteReadError, ConnectionError):
        # The service is gone, and its store with it: the workers' last calls fail at once.
        if remote is not None:
            remote.gone("the service's process is gone")
        stop.set()
    except Exception:  # out of protocol: nothing would answer the store's calls any more
        log.exception("reading the service's messages failed; ending")
        if remote is not None:
            remote.gone("the pipeline process stopped reading the service")
        stop.set()


async def _store_ok(runtime: Runtime) -> bool:
    try:
        await runtime.store.ping()
    except StoreError:
        return False
    return True


def main() -> None:
    """The pipeline process: below the webhook's priority. Ctrl-C in the terminal and a SIGTERM
    to the process group (systemd, `docker stop` of a shell-less image) reach it too, but
    stopping is the service's to decide: it tells us once its own shutdown begins (or closes our
    input by dying), and a child that ended on its own before that would be replaced meanwhile."""
    os.nice(NICENESS)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    asyncio.run(run(int(sys.argv[1]), int(sys.argv[2])))


if __name__ == "__main__":
    main()
