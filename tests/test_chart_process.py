"""The chart renderer process (app/chart_process.py): charts drawn outside the service's process,
at a lower priority, one at a time, each within its timeout, and a new renderer after one died."""

from __future__ import annotations

import asyncio
import io
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app import chart_process
from app.chart_process import RendererProcess, render_async, stop_renderer
from app.charts import HEIGHT_PX, PNG_SIGNATURE, WIDTH_PX, ChartData, ChartError
from tests.test_charts import latency, png_size

# A stand-in renderer speaking the same protocol: it notes each chart's title in `log`, then
# answers after `delay` seconds with the PNG signature (or an error for a title "bad").
STAND_IN = textwrap.dedent(
    """
    import pickle, struct, sys, time
    log, delay = sys.argv[1], float(sys.argv[2])
    header = struct.Struct(">I")
    while head := sys.stdin.buffer.read(4):
        data = pickle.loads(sys.stdin.buffer.read(header.unpack(head)[0]))
        with open(log, "a") as f:
            f.write(data.title + "\\n")
        time.sleep(delay)
        answer = ("error", "no finite value") if data.title == "bad" else ("ok", b"\\x89PNG\\r\\n\\x1a\\n")
        out = pickle.dumps(answer)
        sys.stdout.buffer.write(header.pack(len(out)) + out)
        sys.stdout.buffer.flush()
    """
)


@pytest.fixture(autouse=True)
async def no_renderer_left() -> AsyncIterator[None]:
    yield
    await stop_renderer()


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[asyncio.subprocess.Process]:
    """Every renderer process started during the test (a process left unreaped when its event
    loop closes is one that warns, much later, in another test)."""
    processes: list[asyncio.subprocess.Process] = []
    spawn = asyncio.create_subprocess_exec

    async def recording(*args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
        processes.append(await spawn(*args, **kwargs))
        return processes[-1]

    monkeypatch.setattr(asyncio, "create_subprocess_exec", recording)
    return processes


def stand_in(tmp_path: Path, delay: float) -> tuple[RendererProcess, Path]:
    log = tmp_path / "drawn.log"
    return RendererProcess([sys.executable, "-c", STAND_IN, str(log), str(delay)]), log


def drawn(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


async def test_a_chart_is_drawn_by_a_process_of_its_own_at_a_lower_priority() -> None:
    assert png_size(await render_async(latency(), 30)) == (WIDTH_PX, HEIGHT_PX)
    pid = chart_process.RENDERER.pid
    assert pid is not None and pid != os.getpid()
    expected = min(os.getpriority(os.PRIO_PROCESS, 0) + chart_process.NICENESS, 19)
    assert os.getpriority(os.PRIO_PROCESS, pid) == expected
    await render_async(latency(title="again"), 30)
    assert chart_process.RENDERER.pid == pid, "one renderer for every chart"


async def test_a_chart_that_cannot_be_drawn_is_a_chart_error_and_the_renderer_goes_on() -> None:
    with pytest.raises(ChartError, match="no finite value"):
        await render_async(latency(series=[]), 30)
    assert png_size(await render_async(latency(), 30)) == (WIDTH_PX, HEIGHT_PX)


def test_the_service_process_never_loads_matplotlib_to_draw() -> None:
    code = (
        "import asyncio, sys; from app import chart_process, charts\n"
        "data = charts.ChartData('x', [charts.Series('x', [(0.0, 1.0), (60.0, 2.0)])])\n"
        "async def main():\n"
        "    png = await chart_process.render_async(data, 30)\n"
        "    await chart_process.stop_renderer()\n"
        "    return png\n"
        "png = asyncio.run(main())\n"
        "sys.exit(0 if png.startswith(charts.PNG_SIGNATURE) and 'matplotlib' not in sys.modules"
        " else 1)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


async def test_a_chart_past_its_timeout_ends_the_renderer_and_the_next_gets_a_new_one(
    tmp_path: Path, started: list[asyncio.subprocess.Process]
) -> None:
    renderer, log = stand_in(tmp_path, delay=30)
    with pytest.raises(ChartError, match=r"within 2s"):
        await renderer.render(latency(title="slow"), 2)
    # An answer still on its way would be read as the next chart's: that renderer is gone.
    assert renderer.pid is None and drawn(log) == ["slow"]
    quick, _ = stand_in(tmp_path, delay=0)
    assert await quick.render(latency(title="next"), 5) == PNG_SIGNATURE
    await quick.stop()
    await renderer.stop()
    assert [p.returncode for p in started] == [-signal.SIGKILL, 0]


async def test_a_chart_still_waiting_its_turn_at_its_timeout_is_never_drawn(
    tmp_path: Path,
) -> None:
    renderer, log = stand_in(tmp_path, delay=0.5)
    first = asyncio.create_task(renderer.render(latency(title="first"), 5))
    await asyncio.sleep(0.1)
    with pytest.raises(ChartError, match=r"within 0\.1s"):
        await renderer.render(latency(title="queued"), 0.1)
    assert await first == PNG_SIGNATURE
    assert await renderer.render(latency(title="later"), 5) == PNG_SIGNATURE
    assert drawn(log) == ["first", "later"]
    await renderer.stop()


async def test_a_renderer_that_died_fails_its_chart_and_the_next_chart_starts_a_new_one(
    tmp_path: Path,
) -> None:
    renderer, log = stand_in(tmp_path, delay=0)
    assert await renderer.render(latency(title="one"), 5) == PNG_SIGNATURE
    pid = renderer.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(ChartError, match="renderer process died"):
        await renderer.render(latency(title="two"), 5)
    assert await renderer.render(latency(title="three"), 5) == PNG_SIGNATURE
    assert renderer.pid not in (None, pid)
    with pytest.raises(ChartError, match="no finite value"):
        await renderer.render(latency(title="bad"), 5)
    assert drawn(log) == ["one", "three", "bad"]
    await renderer.stop()


async def test_the_renderer_ends_when_the_service_closes_its_pipe(tmp_path: Path) -> None:
    renderer, _ = stand_in(tmp_path, delay=0)
    await renderer.render(latency(title="one"), 5)
    pid = renderer.pid
    assert pid is not None
    await renderer.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_the_renderer_draws_what_it_reads_until_its_input_ends() -> None:
    def request(data: ChartData) -> bytes:
        encoded = pickle.dumps(data)
        return chart_process.HEADER.pack(len(encoded)) + encoded

    answers = io.BytesIO()
    chart_process.serve(io.BytesIO(request(latency()) + request(latency(series=[]))), answers)
    answers.seek(0)
    replies = []
    while head := answers.read(4):
        replies.append(pickle.loads(answers.read(chart_process.HEADER.unpack(head)[0])))
    assert [kind for kind, _ in replies] == ["ok", "error"]
    assert replies[0][1].startswith(PNG_SIGNATURE)
    assert "no finite value" in replies[1][1]


async def test_an_answer_out_of_protocol_is_a_chart_error_and_the_next_chart_gets_a_new_renderer(
    started: list[asyncio.subprocess.Process],
) -> None:
    babbler = "import sys; sys.stdin.buffer.read(4); sys.stdout.buffer.write(b'\\x00\\x00\\x00\\x05hello'); sys.stdout.flush(); sys.stdin.read()"  # noqa: E501
    renderer = RendererProcess([sys.executable, "-c", babbler])
    with pytest.raises(ChartError, match="out of protocol"):
        await renderer.render(latency(), 5)
    assert renderer.pid is None, "a renderer out of step is not asked again"
    await renderer.stop()
    assert [p.returncode for p in started] == [-signal.SIGKILL], "killed, and reaped by stop()"


async def test_what_a_library_prints_in_the_renderer_never_reaches_the_protocol() -> None:
    # matplotlib and friends may print; main() sends stdout to stderr and answers on a copy.
    code = (
        "import sys\n"
        "from app import chart_process, charts\n"
        "def noisy(data):\n"
        "    print('a library talking', flush=True)\n"
        "    return charts.render(data)\n"
        "chart_process.render = noisy\n"
        "chart_process.main()\n"
    )
    renderer = RendererProcess([sys.executable, "-c", code])
    assert png_size(await renderer.render(latency(), 30)) == (WIDTH_PX, HEIGHT_PX)
    await renderer.stop()
