"""`alert-enricher probe` (app/probe/) against loopback fakes of Binance, OKX and Bybit that answer
with the real exchanges' headers and error bodies (demo/exchanges.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
import respx
from prometheus_client import CollectorRegistry

from app.probe.exporter import ProbeConfig, ProbeMetrics, Prober, load_config
from demo.exchanges import (
    BINANCE_BANNED,
    BINANCE_TOO_MANY,
    BYBIT_RATE_LIMITED,
    OKX_TOO_MANY,
    Answer,
    FakeExchange,
    binance_time,
    bybit_time,
    okx_time,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "deploy" / "probe.example.yml"


@pytest.fixture(autouse=True)
def loopback_is_real(respx_mock: respx.MockRouter) -> None:
    """The fakes are real HTTP servers on 127.0.0.1; everything else stays mocked."""
    respx_mock.route(host="127.0.0.1").pass_through()


def prober(
    url: str, exchange: str, *endpoints: str, interval: float = 1
) -> tuple[Prober, CollectorRegistry]:
    config = ProbeConfig(
        interval_seconds=interval,
        timeout_seconds=0.5,
        exchanges={exchange: {"base_url": url, "endpoints": list(endpoints)}},
    )
    registry = CollectorRegistry()
    return Prober(config, httpx.AsyncClient(), ProbeMetrics(registry)), registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


async def test_a_binance_answer_gives_latency_weight_left_health_and_clock_skew() -> None:
    with FakeExchange().serving() as fake:
        scripted = time.time()  # Binance's answer: this time, 2 s back
        fake.script("/api/v3/time", binance_time(skew=-2.0, used_weight=120))
        subject, registry = prober(fake.url, "binance", "time")
        await subject.probe("binance", "time")
        elapsed = time.time() - scripted
    ok = {"exchange": "binance", "endpoint": "time", "status": "200", "code": ""}
    assert value(registry, "api_requests_total", **ok) == 1
    assert (
        value(registry, "api_request_latency_seconds_count", exchange="binance", endpoint="time")
        == 1
    )
    assert value(registry, "api_rate_limit_remaining", exchange="binance") == 5880
    assert value(registry, "api_rate_limit_limit", exchange="binance") == 6000
    assert value(registry, "api_health_status", exchange="binance") == 1
    skew = value(registry, "api_clock_skew_seconds", exchange="binance")
    # 2 s, plus however long the probe took after the answer was scripted (a loaded machine)
    assert skew is not None and 1.99 < skew < 2.01 + elapsed, "our clock 2 s ahead of Binance's"


@pytest.mark.parametrize(
    ("exchange", "endpoint", "path", "answer", "status", "code"),
    [
        ("binance", "time", "/api/v3/time", BINANCE_TOO_MANY, "429", "-1003"),
        ("binance", "time", "/api/v3/time", BINANCE_BANNED, "418", "-1003"),
        ("okx", "time", "/api/v5/public/time", OKX_TOO_MANY, "429", "50011"),
        ("bybit", "time", "/v5/market/time", BYBIT_RATE_LIMITED, "200", "10006"),
    ],
)
async def test_an_exchange_error_is_counted_by_status_and_its_own_code_and_is_unhealthy(
    exchange: str, endpoint: str, path: str, answer: Answer, status: str, code: str
) -> None:
    with FakeExchange().serving() as fake:
        fake.script(path, answer)
        subject, registry = prober(fake.url, exchange, endpoint)
        await subject.probe(exchange, endpoint)
    labels = {"exchange": exchange, "endpoint": endpoint, "status": status, "code": code}
    assert value(registry, "api_requests_total", **labels) == 1
    assert value(registry, "api_health_status", exchange=exchange) == 0
    assert value(registry, "api_clock_skew_seconds", exchange=exchange) is None


async def test_bybit_reports_the_requests_left_in_its_headers() -> None:
    with FakeExchange().serving() as fake:
        fake.script("/v5/market/time", bybit_time(left=37, limit=600))
        subject, registry = prober(fake.url, "bybit", "time")
        await subject.probe("bybit", "time")
    assert value(registry, "api_rate_limit_remaining", exchange="bybit") == 37
    assert value(registry, "api_rate_limit_limit", exchange="bybit") == 600


async def test_okx_server_time_is_read_from_its_data_array() -> None:
    with FakeExchange().serving() as fake:
        scripted = time.time()  # OKX's answer: this time, 1.5 s ahead
        fake.script("/api/v5/public/time", okx_time(skew=1.5))
        subject, registry = prober(fake.url, "okx", "time")
        await subject.probe("okx", "time")
        elapsed = time.time() - scripted
    skew = value(registry, "api_clock_skew_seconds", exchange="okx")
    # -1.5 s, plus however long the probe took after the answer was scripted
    assert skew is not None and -1.51 < skew < -1.49 + elapsed, "OKX's clock 1.5 s ahead of ours"


async def test_a_timeout_and_a_refused_connection_are_counted_and_unhealthy() -> None:
    with FakeExchange().serving() as fake:
        fake.script("/api/v3/time", Answer(200, {"serverTime": 1}, delay=1.0))
        subject, registry = prober(fake.url, "binance", "time")
        await subject.probe("binance", "time")
    timeout = {"exchange": "binance", "endpoint": "time", "status": "timeout", "code": ""}
    assert value(registry, "api_requests_total", **timeout) == 1
    subject, registry = prober("http://127.0.0.1:9", "binance", "time")
    await subject.probe("binance", "time")
    refused = {"exchange": "binance", "endpoint": "time", "status": "unreachable", "code": ""}
    assert value(registry, "api_requests_total", **refused) == 1
    assert value(registry, "api_health_status", exchange="binance") == 0


async def test_one_endpoint_failing_while_another_answers_keeps_the_exchange_up() -> None:
    with FakeExchange().serving() as fake:
        fake.script("/api/v3/time", binance_time())
        fake.script("/api/v3/depth", Answer(503, {"code": -1001, "msg": "Internal error"}))
        subject, registry = prober(fake.url, "binance", "time", "depth")
        await subject.probe("binance", "time")
        await subject.probe("binance", "depth")
    failed = {"exchange": "binance", "endpoint": "depth", "status": "503", "code": "-1001"}
    assert value(registry, "api_requests_total", **failed) == 1
    assert value(registry, "api_health_status", exchange="binance") == 1, "a partial outage"


async def test_a_429_pauses_every_endpoint_of_the_exchange_for_its_retry_after() -> None:
    with FakeExchange().serving() as fake:
        fake.script(
            "/api/v3/time",
            Answer(429, {"code": -1003, "msg": "Too many"}, {"Retry-After": "2"}),
            binance_time(),
        )
        fake.script("/api/v3/ping", Answer(200, {}))
        subject, _ = prober(fake.url, "binance", "time", "ping", interval=0.2)
        task = asyncio.create_task(subject.run())
        await asyncio.sleep(1.5)
        during = list(fake.requests)
        await asyncio.sleep(1.2)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len(during) <= 2, f"nothing after the 429 until Retry-After: {during}"
    assert len(fake.requests) > len(during), "probing resumed after 2 s"


async def test_an_endpoint_never_has_two_requests_in_flight() -> None:
    with FakeExchange().serving() as fake:
        fake.script("/api/v3/time", Answer(200, {"serverTime": int(time.time() * 1000)}, delay=0.3))
        subject, _ = prober(fake.url, "binance", "time", interval=0.1)  # faster than the answer
        task = asyncio.create_task(subject.run())
        await asyncio.sleep(1.0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len(fake.requests) >= 2 and fake.most_in_flight == 1


def test_the_shipped_example_configuration_loads() -> None:
    config = load_config(EXAMPLE)
    exchanges = {e.name: list(e.endpoints) for e in config.resolved()}
    assert exchanges == {
        "binance": ["time", "ping", "depth"],
        "okx": ["time", "depth"],
        "bybit": ["time", "depth"],
    }


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("exchanges: {kraken: {}}", "unknown exchange 'kraken'"),
        ("exchanges: {binance: {endpoints: [trades]}}", "binance: unknown endpoint(s) trades"),
        ("interval_seconds: 0\nexchanges: {binance: {}}", "greater than or equal to 0.1"),
        ("exchanges: [", "cannot read"),
    ],
)
def test_a_bad_configuration_is_refused_saying_why(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "probe.yml"
    path.write_text(text)
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        load_config(path)
