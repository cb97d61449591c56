"""The pipeline's process (`python -m app.pipeline_child`, started by app/pipeline_process.py):
the service's runtime built from the Settings it is sent, its workers, LLM lane and Telegram
poller running, answering the service's messages until its input closes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pickle
import signal
import sys
from collections.abc import Callable
from typing import Any

from app.child_process import HEADER, frame, pipe_streams, read_frame
from app.logs import configure_logging
from app.pipeline_process import MAX_FRAME_BYTES, NICENESS, STATUS, WAKE
from app.runtime import Runtime, build_runtime
from app.store.base import StoreError

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
    # This process is where the pipeline runs: the runtime's own, not another process's.
    runtime = await build_runtime(settings.model_copy(update={"pipeline_process": False}))
    try:
        runtime.start()
        send({"ready": True})
        await _serve(reader, runtime, send)
    finally:
        await runtime.close()
        answers.close()


async def _serve(reader: asyncio.StreamReader, runtime: Runtime, send: Send) -> None:
    answering: set[asyncio.Task[None]] = set()

    async def answer(seq: int) -> None:
        workers = runtime.workers
        # Workers whose store fails claim nothing: not alive, as far as pages go.
        alive = workers.alive if await _store_ok(runtime) else 0
        metrics = runtime.metrics.exposition("pipeline").decode()
        send({"seq": seq, "alive": alive, "size": workers.size, "metrics": metrics})

    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
        while True:
            kind = await reader.readexactly(1)
            if kind == WAKE:
                runtime.workers.wake()
            elif kind == STATUS:
                (seq,) = HEADER.unpack(await reader.readexactly(HEADER.size))
                task = asyncio.create_task(answer(seq))  # wakes are read meanwhile
                answering.add(task)
                task.add_done_callback(answering.discard)
            else:
                log.error("unknown message %r from the service; ending", kind)
                return


async def _store_ok(runtime: Runtime) -> bool:
    try:
        await runtime.store.ping()
    except StoreError:
        return False
    return True


def main() -> None:
    """The pipeline process: below the webhook's priority. Ctrl-C in the terminal and a SIGTERM
    to the process group (systemd, `docker stop` of a shell-less image) reach it too, but
    stopping is the service's to decide: it closes our input once its own shutdown begins, and a
    child that ended on its own before that would be replaced meanwhile."""
    os.nice(NICENESS)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    asyncio.run(run(int(sys.argv[1]), int(sys.argv[2])))


if __name__ == "__main__":
    main()
