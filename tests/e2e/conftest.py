from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.exporter import Exporter
from tests.e2e.stack import Stack
from tests.loopback import FAKE_SLACK_TOKEN, FakeLLM, FakeSlack, FakeTelegram


@pytest.fixture(autouse=True)
def respx_mock() -> None:
    """End-to-end tests use real HTTP on loopback: no respx here."""
    return None


@dataclass
class Fakes:
    slack: FakeSlack
    telegram: FakeTelegram
    llm: FakeLLM

    def service_env(self) -> dict[str, str]:
        return {
            "SLACK_BOT_TOKEN": FAKE_SLACK_TOKEN,
            "SLACK_CHANNEL": self.slack.channel_id,
            "SLACK_API_URL": self.slack.api_url,
            "TELEGRAM_BOT_TOKEN": self.telegram.token,
            "TELEGRAM_CHAT_ID": "-100123",
            "TELEGRAM_API_URL": self.telegram.api_url,
            "LLM_BASE_URL": self.llm.base_url,
            "LLM_API_KEY": self.llm.key,
        }


@pytest.fixture
async def fakes() -> AsyncIterator[Fakes]:
    servers = Fakes(
        slack=await FakeSlack().start(),
        telegram=await FakeTelegram().start(),
        llm=await FakeLLM().start(),
    )
    yield servers
    for server in (servers.slack, servers.telegram, servers.llm):
        await server.stop()


@pytest.fixture
def exporter() -> Exporter:
    running = Exporter().start()
    yield running
    running.stop()


@pytest.fixture
async def stack(
    tmp_path: Path, exporter: Exporter, fakes: Fakes
) -> AsyncIterator[Callable[..., Awaitable[Stack]]]:
    """Start the whole stack (blocking start-up runs in a thread so the fakes keep serving)."""
    started: list[Stack] = []

    async def start(alertmanagers: int = 1, service_only: bool = False, **env: str) -> Stack:
        service_env = {
            **fakes.service_env(),
            "LLM_TIMEOUT_SECONDS": "4",
            "LEASE_SECONDS": "3",
            "CONTEXT_WINDOW_MINUTES": "1",  # 1s steps: the series is only seconds old
            **env,
        }
        running = Stack(tmp_path, exporter.port, service_env, alertmanagers=alertmanagers)
        started.append(running)
        if service_only:
            await asyncio.to_thread(running.start_service)
            return running
        await asyncio.to_thread(running.start)
        await asyncio.to_thread(running.wait_for_history)
        return running

    yield start
    for running in started:
        await asyncio.to_thread(running.stop)


async def eventually(check: Callable[[], Any], timeout: float = 30, what: str = "") -> Any:
    """Poll until `check()` is truthy, serving the event loop (the fakes live on it)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        await asyncio.sleep(0.1)


SETTLE_SECONDS = 0.5  # a send already on the wire when the backlog read empty


async def quiet(stack: Any, timeout: float = 30) -> None:
    """Until the service has nothing left to send: its backlog (pending, retrying and in-progress
    notifications, diagnosis edits among them) and its LLM lane's (diagnoses queued or running,
    which may yet become edits) read empty from /health twice in a row, then one short settle.
    What a test waits for before asserting that nothing more arrives, instead of a fixed sleep
    that is either too long or, on a slow machine, too short."""

    async def idle() -> bool:
        async with httpx.AsyncClient(timeout=5) as client:
            health = (await client.get(f"{stack.service_url}/health")).json()
        workers = health.get("components", {}).get("workers", {})
        return workers.get("backlog") == 0 and workers.get("llm_backlog") == 0

    deadline = asyncio.get_running_loop().time() + timeout
    empty_reads = 0
    while empty_reads < 2:
        empty_reads = empty_reads + 1 if await idle() else 0
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the service still had work after {timeout}s")
        await asyncio.sleep(0.1)
    await asyncio.sleep(SETTLE_SECONDS)
