"""The chart renderer: `python -m app.chart_process`, a process of its own at a lower CPU priority.

Drawing holds the Python interpreter for 70-500 ms a chart; on the service's thread, or on a thread
of its process, it stalled the webhook and the pages. So the service starts one renderer with its
first chart (`RendererProcess`) and sends it charts one at a time over a pipe: a request is a pickled
`ChartData`, an answer a pickled ("ok", png) or ("error", reason), each a frame (app/child_process.py:
a 4-byte length, then the bytes). The renderer runs at nice +10, so in a storm it only gets the CPU
the pages and diagnoses leave.

Not `multiprocessing`: its spawned children import the parent's main script again, which for a
console script or a test runner is whole programs (under mutmut it failed outright). This child
imports `app.charts` and `app.child_process`, nothing else of the service. It ends when its stdin
closes: when the service stops, or dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import signal
import sys
from collections.abc import Sequence
from typing import BinaryIO

from app.charts import ChartData, ChartError, render
from app.child_process import HEADER, child_env, frame, module_command, read_frame

NICENESS = 10
MAX_ANSWER_BYTES = 4 * 2**20  # a PNG is at most 300 kB (app/charts.py); anything larger is a fault
COMMAND = module_command("app.chart_process")


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    """The renderer's loop: draw each chart asked for until the service closes the pipe."""
    while header := requests.read(HEADER.size):
        (size,) = HEADER.unpack(header)
        data = pickle.loads(requests.read(size))  # noqa: S301 - from the service that started us
        try:
            answer: tuple[str, bytes | str] = ("ok", render(data))
        except ChartError as exc:
            answer = ("error", str(exc))
        encoded = pickle.dumps(answer)
        answers.write(frame(encoded))
        answers.flush()


class RendererProcess:
    """The service's side: one renderer, started on the first chart and again after it died;
    charts wait their turn, and a chart's timeout includes that wait."""

    def __init__(self, command: Sequence[str] = COMMAND) -> None:
        self._command = list(command)
        self._process: asyncio.subprocess.Process | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._turn: asyncio.Lock | None = None
        self._reaping: set[asyncio.Task[int]] = set()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def render(self, data: ChartData, timeout: float) -> bytes:  # noqa: ASYNC109
        try:
            async with asyncio.timeout(timeout):
                async with self._lock():
                    return await self._ask(pickle.dumps(data))
        except TimeoutError as exc:
            raise ChartError(f"chart not rendered within {timeout:g}s") from exc

    async def stop(self) -> None:
        """End the renderer: its stdin closes, and it is killed if it does not exit at once;
        renderers killed earlier on this event loop are reaped by then too."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            if process.stdin is not None:
                process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), 1.0)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._reaping and asyncio.get_running_loop() is self._loop:
            await asyncio.wait(self._reaping, timeout=1.0)

    def _lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._turn is None:
            self._forget()  # a renderer of another event loop (tests run one loop each)
            self._loop, self._turn = loop, asyncio.Lock()
        return self._turn

    def _forget(self) -> None:
        """Kill the renderer without waiting; on its own event loop it is reaped meanwhile."""
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, 9)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return
        if running is self._loop:
            reaping = running.create_task(process.wait())
            self._reaping.add(reaping)
            reaping.add_done_callback(self._reaping.discard)

    async def _started(self) -> asyncio.subprocess.Process:
        if self._process is None or self._process.returncode is not None:
            self._process = await asyncio.create_subprocess_exec(
                *self._command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env=child_env(),
            )
        return self._process

    async def _ask(self, request: bytes) -> bytes:
        process = await self._started()
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write(frame(request))
            await process.stdin.drain()
            answer = await read_frame(process.stdout, MAX_ANSWER_BYTES)
            kind, value = pickle.loads(answer)  # noqa: S301 - from the renderer we started
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            await self.stop()
            raise ChartError("chart renderer process died") from exc
        except Exception as exc:  # an answer not of the protocol: the pipe is out of step now
            self._forget()
            raise ChartError(f"chart renderer answered out of protocol: {exc}") from exc
        except BaseException:  # cancelled (the chart's timeout) mid-answer: out of step too
            self._forget()
            raise
        if kind != "ok":
            raise ChartError(str(value))
        return bytes(value)


RENDERER = RendererProcess()  # the service's one renderer


async def render_async(data: ChartData, timeout: float = 5.0) -> bytes:  # noqa: ASYNC109
    """The chart drawn by the renderer process; ChartError on any failure, or past `timeout`
    (which includes the wait behind earlier charts: a chart still waiting then is never drawn)."""
    return await RENDERER.render(data, timeout)


async def stop_renderer() -> None:
    await RENDERER.stop()


def main() -> None:
    """The renderer process: below the service's priority; answers on a private copy of stdout,
    so whatever a library prints goes to stderr, never into the protocol; Ctrl-C in the
    service's terminal is the service's to handle (this ends when its input closes)."""
    os.nice(NICENESS)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin.buffer, answers)


if __name__ == "__main__":
    main()
