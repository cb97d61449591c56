"""`alert-enricher serve` as users run it: the webhook in the service's process, the workers in a
child at a lower priority, which prints to the service's output, answers /health and /metrics
through the service, is replaced when it dies, and never outlives the service."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.pipeline_process import NICENESS
from demo.processes import Process, free_port, wait_http
from tests.fakes import FIXTURES

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
ROOT = Path(__file__).resolve().parent.parent.parent
TOKEN = "fake-e2e-webhook-token"
FIRING = (FIXTURES / "alertmanager-0.25-firing_apidown_binance.json").read_bytes()


def until(condition: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
    return value


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


class Service:
    def __init__(self, tmp: Path, **settings: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / "service.log"
        self.store = tmp / "store.db"
        env = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "WEBHOOK_TOKEN": TOKEN,
            "STORE_URL": f"sqlite:///{self.store}",
            "PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens: no context
            "LOG_LEVEL": "INFO",
            **settings,
        }
        command = [sys.executable, "-m", "app", "serve"]
        self.process = Process("service", command, self.log, env=env, cwd=ROOT).start()
        wait_http(f"{self.url}/health", 60, self.process.proc)

    def health(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/health", timeout=10).json()

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=10).text

    def post(self, body: bytes) -> int:
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        return httpx.post(
            f"{self.url}/alerts", content=body, headers=headers, timeout=10
        ).status_code

    def processed(self) -> float:
        for line in self.metrics().splitlines():
            if line.startswith('alert_enricher_notifications_processed_total{outcome="done"}'):
                return float(line.split()[-1])
        return 0.0

    def pipeline_pid(self) -> int | None:
        workers = self.health()["components"]["workers"]
        return workers["process"] if workers["alive"] == workers["size"] else None


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    running = Service(tmp_path)
    yield running
    running.process.stop()


def mapped(pid: int) -> str:
    """The files a process has mapped: its shared libraries and Python's extension modules."""
    return Path(f"/proc/{pid}/maps").read_text()


def test_the_workers_run_in_a_child_below_the_webhooks_priority_and_print_to_its_output(
    service: Service,
) -> None:
    pid = until(service.pipeline_pid)
    assert service.process.proc is not None
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    assert int(stat[1]) == service.process.proc.pid, "a child of the service"
    expected = min(os.getpriority(os.PRIO_PROCESS, service.process.proc.pid) + NICENESS, 19)
    assert os.getpriority(os.PRIO_PROCESS, pid) == expected
    assert service.post(FIRING) == 202
    until(lambda: service.processed() == 1)
    metrics = service.metrics()
    assert 'alert_enricher_webhooks_total{outcome="accepted"} 1.0' in metrics
    assert "alert_enricher_pipeline_up 1.0" in metrics
    until(lambda: "FIRING: APIDown on binance" in service.log.read_text())
    # Each process loads what it runs (tests/test_services.py checks the pure-Python ones):
    # the webhook's no aiohttp, PromQL parser or PostgreSQL driver; on SQLite, neither the child.
    webhook, child = mapped(service.process.proc.pid), mapped(pid)
    assert "/aiohttp/" in child and "promql_parser" in child  # what the pipeline runs
    for library in ("/aiohttp/", "promql_parser", "psycopg_binary"):
        assert library not in webhook, library
    assert "psycopg_binary" not in child


def test_a_killed_pipeline_is_replaced_and_what_was_accepted_meanwhile_is_processed(
    service: Service,
) -> None:
    first = until(service.pipeline_pid)
    os.kill(first, signal.SIGKILL)
    assert service.post(FIRING) == 202, "the webhook answers while the pipeline is down"
    second = until(service.pipeline_pid)
    assert second != first
    until(lambda: service.processed() == 1)
    log = service.log.read_text()
    assert "the pipeline process exited (code -9); a new one starts in 1s" in log


def test_the_pipeline_ends_when_the_service_is_killed(service: Service) -> None:
    pid = until(service.pipeline_pid)
    assert service.process.proc is not None
    os.kill(service.process.proc.pid, signal.SIGKILL)  # the service alone, not its group
    service.process.proc.wait(10)
    until(lambda: not alive(pid), timeout=20)


class Silent:
    """An HTTP server that takes connections and never answers: a chat API hanging."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._hold, daemon=True).start()

    def _hold(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.held.append(self.listener.accept()[0])

    def close(self) -> None:
        for conn in self.held:
            conn.close()
        self.listener.close()


def test_a_stopping_service_gets_its_pipelines_claims_back_through_its_own_store(
    tmp_path: Path,
) -> None:
    silent = Silent()
    service = Service(tmp_path, SLACK_WEBHOOK_URL=silent.url)
    try:
        until(service.pipeline_pid)
        assert service.post(FIRING) == 202
        until(lambda: silent.held)  # a worker holds the notification, sending to Slack
        assert service.process.proc is not None
        began = time.monotonic()
        service.process.proc.send_signal(signal.SIGTERM)
        # uvicorn ends by the signal it got, once its shutdown is done
        assert service.process.proc.wait(30) in (0, -signal.SIGTERM)
        assert time.monotonic() - began < 20, "the workers' grace, not a kill"
    finally:
        service.process.stop()
        silent.close()
    with sqlite3.connect(service.store) as conn:
        rows = conn.execute("SELECT state, owner, attempts FROM notifications").fetchall()
    assert rows == [("pending", None, 0)], "handed back: claimable at once, attempt not counted"
    assert "Application shutdown complete" in service.log.read_text()
