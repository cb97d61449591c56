"""`python -m app` as a user runs it, in a process of its own (not under mutmut: a child process
of a mutated tree cannot find mutmut's configuration)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from aiohttp import web

from tests.fakes import FIXTURES
from tests.loopback import LoopbackServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
ROOT = Path(__file__).resolve().parent.parent.parent


class FakePrometheus(LoopbackServer):
    """query_range answering one series of the binance target, for a process of its own."""

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/api/v1/query_range", self._range)

    async def _range(self, request: web.Request) -> web.Response:
        labels = {"exchange": "binance", "instance": "127.0.0.1:19100", "job": "crypto-api-monitor"}
        values = [[1_700_000_000 + 30 * i, str(v)] for i, v in enumerate([1, 1, 0, 0])]
        result = [{"metric": labels, "values": values}]
        return web.json_response(
            {"status": "success", "data": {"resultType": "matrix", "result": result}}
        )


async def test_python_m_app_replay_draws_its_chart_in_the_renderer_process(
    tmp_path,
) -> None:
    # The renderer is a spawned process: from `python -m app` too (multiprocessing does not run a
    # package's __main__ again in it), and it ends with the command.
    prometheus = await FakePrometheus().start()
    out = tmp_path / "out.png"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "SLACK_", "TELEGRAM_"))}
    env |= {"PROMETHEUS_URL": prometheus.url, "STORE_URL": f"sqlite:///{tmp_path}/s.db"}
    try:
        replay = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "app", "replay",
            str(FIXTURES / "alertmanager-0.25-firing_apidown_binance.json"), "--chart", str(out),
            cwd=tmp_path, env=env | {"PYTHONPATH": str(ROOT)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(replay.communicate(), 60)
    finally:
        await prometheus.stop()
    assert replay.returncode == 0, stderr.decode()
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert stdout.decode().count("APIDown") >= 1
    assert b"usage:" not in stderr and stderr.decode().count("chart written to") == 1
