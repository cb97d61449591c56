import math
import time
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlencode

import httpx
import pytest
import respx

from app.models import Alert
from app.prometheus import ContextBuilder, PrometheusClient, matches, sparkline, summarise
from tests.fakes import PROMETHEUS_URL, fixture_payload, matrix

NOW = datetime(2026, 11, 21, 10, 30, tzinfo=UTC)
QUERY_RANGE = f"{PROMETHEUS_URL}/api/v1/query_range"


def builder(
    http: httpx.AsyncClient, token: str | None = None, timeout: float = 5, **options: float
) -> ContextBuilder:
    return ContextBuilder(
        PrometheusClient(http, PROMETHEUS_URL, token),
        window_minutes=30,
        graph_base="http://prom.example:9090",
        max_alerts=10,
        timeout=timeout,
        **options,
    )


def alert_for(expr: str, exchange: str = "binance") -> Alert:
    url = "http://vm:19090/graph?" + urlencode({"g0.expr": expr, "g0.tab": "1"})
    return Alert(
        status="firing",
        labels={"alertname": "APIDown", "exchange": exchange},
        generatorURL=url,
    )


class GarbageClient(PrometheusClient):
    """Answers with a series whose labels are not a mapping: a bug past every parsing check."""

    async def query_range(
        self, expr: str, start: datetime, end: datetime, step_seconds: int
    ) -> list[tuple[dict[str, str], list[float]]]:
        return [(None, [1.0])]  # type: ignore[list-item]


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
    assert (by_exchange["binance"].comparison, by_exchange["binance"].threshold) == ("==", 0)


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


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("(" * 50_000 + "up" + ")" * 50_000, "too long to analyse (100002 characters"),
        (" and ".join(["api_health_status == 0"] * 3_001), "too long to analyse (81022 characters"),
        (
            "(" * 3_000 + "api_health_status == 0" + ") and up" * 3_000,
            "too long to analyse (27022 characters",
        ),
        ("abs(" * 1_000 + "up" + ")" * 1_000, "too deeply nested to analyse (1000 levels"),
        ("-" * 5_000 + "up", "too many operators to analyse (5000"),
    ],
    ids=[
        "50k-nested-parens",
        "3k-chained-and",
        "3k-left-nested-and",
        "1k-nested-calls",
        "5k-unary-minus",
    ],
)
async def test_pathological_expression_gives_metrics_unavailable_quickly_and_spares_the_rest(
    respx_mock: respx.MockRouter, expr: str, reason: str
) -> None:
    route = respx_mock.post(QUERY_RANGE).mock(return_value=matrix(({"exchange": "okx"}, [1, 0])))
    alerts = [alert_for(expr), alert_for("api_health_status == 0", exchange="okx")]
    started = time.monotonic()
    async with httpx.AsyncClient() as http:
        hostile, fine = await builder(http).build(alerts, now=NOW)
    assert time.monotonic() - started < 2
    assert reason in (hostile.unavailable or "")
    assert (hostile.expr, hostile.graph_url) == ("", None), "the text is not echoed back"
    assert fine.current == 0, "the other alert keeps its context"
    assert [parse_qs(c.request.content.decode())["query"] for c in route.calls] == [
        ["api_health_status"]
    ]


async def test_expression_that_is_not_promql_gives_metrics_unavailable_without_a_query(
    respx_mock: respx.MockRouter,
) -> None:
    async with httpx.AsyncClient() as http:
        [context] = await builder(http).build([alert_for("rate(errors[5m] > 0")], now=NOW)
    assert (context.unavailable or "").startswith("expression is not valid PromQL: ")
    assert not respx_mock.calls


async def test_expression_analysis_timeout_gives_metrics_unavailable(
    respx_mock: respx.MockRouter,
) -> None:
    async with httpx.AsyncClient() as http:
        [context] = await builder(http, parse_timeout=0).build([alert_for("up == 0")], now=NOW)
    assert context.unavailable == "analysing the expression took longer than 0s"
    assert not respx_mock.calls


async def test_unexpected_error_gives_every_alert_metrics_unavailable_instead_of_raising(
    respx_mock: respx.MockRouter,
) -> None:
    alerts = [alert_for("up == 0"), alert_for("up == 0", exchange="okx")]
    async with httpx.AsyncClient() as http:
        contexts = await ContextBuilder(
            GarbageClient(http, PROMETHEUS_URL), 30, "http://p", max_alerts=10, timeout=5
        ).build(alerts, now=NOW)
    assert [c.unavailable for c in contexts] == [
        "internal error while building the metric context"
    ] * 2


async def test_bool_and_group_left_threshold_queries_the_metric_side(
    respx_mock: respx.MockRouter,
) -> None:
    ratio = "sum by (job) (rate(errors[5m])) / on(job) group_left(team) team_info"
    route = respx_mock.post(QUERY_RANGE).mock(return_value=matrix())
    async with httpx.AsyncClient() as http:
        [context] = await builder(http).build([alert_for(f"{ratio} > bool 0.1")], now=NOW)
    assert parse_qs(route.calls[0].request.content.decode())["query"] == [ratio]
    assert context.expr == ratio
    assert context.unavailable == "query returned no series"
