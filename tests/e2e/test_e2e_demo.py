"""`make demo` as a newcomer runs it: real Prometheus with the shipped rules, real Alertmanager with
the shipped routing, the real probe exporter against the fake exchanges, and the service. The
scheduled outage pages and resolves on the console; afterwards the service's and the probe's
/metrics show every family with values that match what happened; Ctrl-C stops every process.

The LLM is a loopback fake (the demo passes the environment through, as it does a checkout's .env),
so the LLM's families count real requests, tokens and cost."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.metrics import Metrics
from demo.processes import ALERTMANAGER_BINARIES, binary
from tests.e2e.stack import ROOT
from tests.loopback import FakeLLM

pytestmark = pytest.mark.e2e

PAGE_TIMEOUT = 120  # the outage starts 5 s in; APIDown pages ~20 s later, resolves ~25 s after it


@pytest.fixture
async def llm() -> AsyncIterator[FakeLLM]:
    server = await FakeLLM().start()
    yield server
    await server.stop()


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(text: str) -> tuple[set[str], Samples]:
    """(the family names exposed, every sample by name and labels)."""
    families = list(text_string_to_metric_families(text))
    found = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples
    }
    return {f.name for f in families}, found


def value(found: Samples, name: str, **labels: str) -> float:
    """The sum over the samples of `name` that carry `labels`."""
    return sum(v for (n, ls), v in found.items() if n == name and set(labels.items()) <= set(ls))


def listening(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as s:
        return s.connect_ex((host, int(port))) == 0


async def read_until(stream: asyncio.StreamReader, pattern: str, seen: list[str]) -> re.Match[str]:
    while True:
        line = (await stream.readline()).decode(errors="replace")
        if not line:
            raise AssertionError("the demo ended early:\n" + "".join(seen))
        seen.append(line)
        if match := re.search(pattern, line):
            return match


async def stop(demo: asyncio.subprocess.Process) -> None:
    """Ctrl-C, and SIGKILL if that does not end it within 30 s (its children die with it)."""
    if demo.returncode is not None:
        return
    os.killpg(demo.pid, signal.SIGINT)
    try:
        await asyncio.wait_for(demo.wait(), timeout=30)
    except TimeoutError:
        os.killpg(demo.pid, signal.SIGKILL)
        await demo.wait()


@dataclass
class Demo:
    process: asyncio.subprocess.Process
    seen: list[str]

    async def read_until(self, pattern: str) -> re.Match[str]:
        assert self.process.stdout is not None
        return await read_until(self.process.stdout, pattern, self.seen)


@pytest.fixture
async def demo(llm: FakeLLM, tmp_path: Path) -> AsyncIterator[Demo]:
    """`make demo` with the fake LLM; stopped (Ctrl-C, then SIGKILL) whatever the test does."""
    binary("prometheus"), binary(*ALERTMANAGER_BINARIES)
    env = {
        **os.environ,
        "LLM_API_KEY": llm.key,
        "LLM_BASE_URL": llm.base_url,
        "TMPDIR": str(tmp_path),  # the demo's working directory lands here
        "DEMO_ARGS": "--outage-after 5 --outage-seconds 25",
    }
    for channel in ("SLACK_BOT_TOKEN", "TELEGRAM_BOT_TOKEN"):
        env.pop(channel, None)  # the console, as for a newcomer with no chat configured
    process = await asyncio.create_subprocess_exec(
        "make",
        "-s",
        "demo",
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    running = Demo(process, [])
    try:
        yield running
    finally:
        await stop(process)


@pytest.mark.timeout(PAGE_TIMEOUT + 90)
async def test_make_demo_pages_resolves_fills_every_metric_family_and_stops_on_ctrl_c(
    demo: Demo, tmp_path: Path
) -> None:
    urls: dict[str, str] = {}
    try:
        async with asyncio.timeout(PAGE_TIMEOUT):
            await demo.read_until(r"running\. Ctrl-C stops it all")
            for _ in range(6):  # the banner: one part per line
                line = await demo.read_until(r"")
                if part := re.match(r"\s+(\S+)\s+(http://127\.0\.0\.1:\d+)", line.string):
                    urls[part.group(1)] = part.group(2)
            await demo.read_until(r"FIRING: APIDown on bybit")
            await demo.read_until(r"Source: .*model deepseek-chat, ~?\d+ tokens, \$")
            await demo.read_until(r"RESOLVED: APIDown on bybit")
    except TimeoutError as error:
        printed = "".join(demo.seen)
        raise AssertionError(
            f"no page and resolution in time; the demo printed:\n{printed}"
        ) from error
    assert set(urls) == {"probe", "Prometheus", "Alertmanager", "alert-enricher"}

    async with httpx.AsyncClient(timeout=10) as client:
        exposed, service = scrape((await client.get(f"{urls['alert-enricher']}/metrics")).text)
        _, probe = scrape((await client.get(f"{urls['probe']}/metrics")).text)

    # The service: every family it declares is exposed, with values that match what happened.
    assert {family.name for family in Metrics().registry.collect()} <= exposed
    assert value(service, "alert_enricher_webhooks_total", outcome="accepted") >= 2
    assert value(service, "alert_enricher_alerts_received_total", status="resolved") >= 1
    assert value(service, "alert_enricher_webhook_ack_seconds_count") >= 2
    assert value(service, "alert_enricher_notifications_processed_total", outcome="done") >= 2
    assert value(service, "alert_enricher_diagnoses_total", source="llm") >= 1
    ok = value(service, "alert_enricher_llm_requests_total", model="deepseek-chat", outcome="ok")
    assert ok >= 1
    assert value(service, "alert_enricher_llm_tokens_total", kind="prompt") > 100 * ok
    assert value(service, "alert_enricher_llm_tokens_total", kind="completion") > 10 * ok
    assert 0 < value(service, "alert_enricher_llm_cost_usd_total", model="deepseek-chat") < 0.01
    assert value(service, "alert_enricher_deliveries_total", channel="console", outcome="sent") >= 2
    assert value(service, "alert_enricher_time_to_page_seconds_count", severity="critical") >= 1
    assert value(service, "alert_enricher_prometheus_queries_total", outcome="ok") >= 1
    assert value(service, "alert_enricher_fallbacks_total") == 0
    assert value(service, "alert_enricher_backlog") == 0
    assert value(service, "alert_enricher_queue_oldest_age_seconds") == 0

    # The real probe exporter saw the outage and the recovery.
    assert value(probe, "api_requests_total", exchange="bybit", status="503") >= 1
    assert value(probe, "api_requests_total", exchange="binance", status="200") >= 3
    assert value(probe, "api_health_status", exchange="bybit") == 1
    assert value(probe, "api_rate_limit_remaining", exchange="binance") > 5000
    assert abs(value(probe, "api_clock_skew_seconds", exchange="okx")) < 1
    assert value(probe, "api_request_latency_seconds_count", exchange="okx") >= 3

    # Ctrl-C in a terminal signals the whole foreground group: make and the demo.
    os.killpg(demo.process.pid, signal.SIGINT)
    rest, _ = await asyncio.wait_for(demo.process.communicate(), timeout=60)
    printed = "".join(demo.seen) + rest.decode(errors="replace")
    assert "stopped." in printed, printed
    for name, url in urls.items():
        assert not listening(url), f"{name} still listens at {url} after Ctrl-C"
    assert not list(tmp_path.glob("alert-enricher-demo-*")), "the demo left its files behind"
