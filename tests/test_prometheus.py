import math
from datetime import UTC, datetime
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from app.models import Alert
from app.prometheus import ContextBuilder, PrometheusClient, matches, sparkline, summarise
from tests.fakes import PROMETHEUS_URL, fixture_payload, matrix

NOW = datetime(2026, 11, 21, 10, 30, tzinfo=UTC)


def builder(
    http: httpx.AsyncClient, token: str | None = None, timeout: float = 5
) -> ContextBuilder:
    return ContextBuilder(
        PrometheusClient(http, PROMETHEUS_URL, token),
        window_minutes=30,
        graph_base="http://prom.example:9090",
        max_alerts=10,
        timeout=timeout,
    )


def test_sparkline_maps_min_to_lowest_and_max_to_highest_bar() -> None:
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([1, math.nan, 1]) == "▅ ▅"
    assert sparkline([]) == ""


def test_summary_gives_current_min_max_mean_and_change() -> None:
    context = summarise("x", [1, 0, 0, math.nan, 0], 30)
    assert (context.current, context.minimum, context.maximum) == (0, 0, 1)
    assert context.mean == 0.25
    assert context.change == -1


def test_series_match_alert_by_its_labels_ignoring_name() -> None:
    alert = {"alertname": "APIDown", "exchange": "binance", "job": "j", "severity": "critical"}
    assert matches({"__name__": "api_health_status", "exchange": "binance", "job": "j"}, alert)
    assert not matches({"exchange": "okx", "job": "j"}, alert)


async def test_context_queries_own_prometheus_never_the_generator_host(
    respx_mock: respx.MockRouter,
) -> None:
    payload = fixture_payload("alertmanager-0.25-firing_apidown_group_of_3.json")
    route = respx_mock.post(f"{PROMETHEUS_URL}/api/v1/query_range").mock(
        return_value=matrix(
            (
                {
                    "__name__": "api_health_status",
                    "exchange": "binance",
                    "instance": "127.0.0.1:19100",
                    "job": "crypto-api-monitor",
                },
                [1, 1, 0, 0],
            ),
            (
                {
                    "__name__": "api_health_status",
                    "exchange": "okx",
                    "instance": "127.0.0.1:19100",
                    "job": "crypto-api-monitor",
                },
                [1, 1, 1, 0],
            ),
        )
    )
    async with httpx.AsyncClient() as http:
        contexts = await builder(http).build(payload.firing, now=NOW)
    assert route.call_count == 1, "one query per distinct expression"
    form = parse_qs(route.calls[0].request.content.decode())
    assert form["query"] == ["api_health_status"]
    assert form["step"] == ["30"], "30 minutes at most 60 points"
    by_exchange = {a.labels["exchange"]: c for a, c in zip(payload.firing, contexts, strict=True)}
    assert by_exchange["binance"].change == -1
    assert by_exchange["binance"].sparkline == "██▁▁"
    assert by_exchange["okx"].sparkline == "███▁"
    assert by_exchange["bybit"].unavailable == "no matching series"
    assert by_exchange["binance"].graph_url.startswith("http://prom.example:9090/graph?g0.expr=")


async def test_prometheus_token_is_sent_as_bearer(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(f"{PROMETHEUS_URL}/api/v1/query_range").mock(return_value=matrix())
    payload = fixture_payload("alertmanager-0.25-firing_apidown_binance.json")
    async with httpx.AsyncClient() as http:
        await builder(http, token="fake-prom-token").build(payload.firing, now=NOW)
    assert route.calls[0].request.headers["authorization"] == "Bearer fake-prom-token"


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (httpx.ConnectError("refused"), "Prometheus unreachable (ConnectError)"),
        (httpx.Response(503, text="down"), "Prometheus answered HTTP 503"),
        (
            httpx.Response(400, json={"status": "error", "error": "parse error at char 3"}),
            "Prometheus answered HTTP 400: parse error at char 3",
        ),
        (httpx.ReadTimeout("slow"), "Prometheus timed out"),
    ],
)
async def test_prometheus_failures_become_metrics_unavailable(
    respx_mock: respx.MockRouter, response: object, reason: str
) -> None:
    respx_mock.post(f"{PROMETHEUS_URL}/api/v1/query_range").mock(side_effect=[response])
    payload = fixture_payload("alertmanager-0.25-firing_apidown_binance.json")
    async with httpx.AsyncClient() as http:
        [context] = await builder(http).build(payload.firing, now=NOW)
    assert context.unavailable == reason


async def test_alert_without_generator_url_gets_a_reason_not_a_query(
    respx_mock: respx.MockRouter,
) -> None:
    alert = Alert(status="firing", labels={"alertname": "X"})
    async with httpx.AsyncClient() as http:
        [context] = await builder(http).build([alert], now=NOW)
    assert context.unavailable == "no expression in generatorURL"
    assert not respx_mock.calls


async def test_only_the_first_max_alerts_get_context(respx_mock: respx.MockRouter) -> None:
    respx_mock.post(f"{PROMETHEUS_URL}/api/v1/query_range").mock(return_value=matrix())
    alerts = fixture_payload("alertmanager-0.25-firing_apidown_group_of_3.json").firing
    async with httpx.AsyncClient() as http:
        contexts = await ContextBuilder(
            PrometheusClient(http, PROMETHEUS_URL), 30, "http://p", max_alerts=2, timeout=5
        ).build(alerts, now=NOW)
    assert len(contexts) == 2
