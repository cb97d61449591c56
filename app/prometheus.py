"""Prometheus HTTP API client and the metric context behind each alert.

Only `PROMETHEUS_URL` is ever queried; the host in an alert's generatorURL is ignored (it is often an
internal name the service cannot reach, and it is attacker-controlled text). Every failure, from an
expression too large or not valid to analyse (see `app.promql`) to a bug here, turns into
`MetricContext(unavailable=reason)`: missing metrics never stop a notification.
"""

from __future__ import annotations

import asyncio
import logging
import math
import statistics
from datetime import UTC, datetime, timedelta
from typing import NamedTuple
from urllib.parse import urlencode

import httpx

from app.formatting import clean
from app.metrics import Metrics
from app.models import Alert, MetricContext, PlotSeries
from app.promql import PromQLError, context_expr, expr_from_generator_url, threshold

log = logging.getLogger(__name__)

MAX_POINTS = 60
PARSE_TIMEOUT_SECONDS = 2.0
SPARK_BARS = "▁▂▃▄▅▆▇█"

MAX_CHART_SERIES = 5  # series kept with their times for an alert's chart, its own first


class Series(NamedTuple):
    labels: dict[str, str]
    values: list[float]  # finite or NaN
    times: list[float] = []  # noqa: RUF012 - never mutated; unix seconds of each value


class PrometheusError(Exception):
    """A query failed: transport error, timeout, bad status or an error answer."""


class PrometheusClient:
    def __init__(self, http: httpx.AsyncClient, base_url: str, token: str | None = None) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def query_range(
        self, expr: str, start: datetime, end: datetime, step_seconds: int
    ) -> list[Series]:
        """Run query_range; returns (labels, finite-or-NaN values, their times) per series."""
        params = {
            "query": expr,
            "start": f"{start.timestamp():.3f}",
            "end": f"{end.timestamp():.3f}",
            "step": str(step_seconds),
        }
        try:
            response = await self._http.post(
                f"{self._base}/api/v1/query_range", data=params, headers=self._headers
            )
        except httpx.TimeoutException as exc:
            raise PrometheusError("Prometheus timed out") from exc
        except httpx.HTTPError as exc:
            raise PrometheusError(f"Prometheus unreachable ({type(exc).__name__})") from exc
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or body.get("status") != "success":
            detail = body.get("error") if isinstance(body, dict) else None
            suffix = f": {detail}" if detail else ""
            raise PrometheusError(f"Prometheus answered HTTP {response.status_code}{suffix}")
        data = body.get("data") or {}
        if data.get("resultType") != "matrix":
            raise PrometheusError(f"unexpected result type {data.get('resultType')!r}")
        series: list[Series] = []
        for item in data.get("result") or []:
            labels = {str(k): str(v) for k, v in (item.get("metric") or {}).items()}
            pairs = item.get("values") or []
            values = [_to_float(v) for _, v in pairs]
            series.append(Series(labels, values, [_to_float(t) for t, _ in pairs]))
        return series

    async def ready(self) -> str:
        """Ask Prometheus for its build info; returns its version (for `check`)."""
        try:
            response = await self._http.get(
                f"{self._base}/api/v1/status/buildinfo", headers=self._headers
            )
            response.raise_for_status()
            return str(response.json().get("data", {}).get("version", "unknown"))
        except httpx.HTTPStatusError as exc:
            raise PrometheusError(f"{self._base} answered HTTP {exc.response.status_code}") from exc
        except (httpx.HTTPError, ValueError) as exc:
            raise PrometheusError(f"{self._base} unreachable ({type(exc).__name__})") from exc


def _to_float(value: object) -> float:
    try:
        return float(str(value))
    except ValueError:
        return math.nan


def sparkline(values: list[float]) -> str:
    """One unicode bar per value; gaps (NaN) become spaces."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return ""
    low, high = min(finite), max(finite)
    span = high - low
    bars = []
    for v in values:
        if not math.isfinite(v):
            bars.append(" ")
        elif span == 0:
            bars.append(SPARK_BARS[len(SPARK_BARS) // 2])
        else:
            bars.append(SPARK_BARS[round((v - low) / span * (len(SPARK_BARS) - 1))])
    return "".join(bars)


def summarise(expr: str, values: list[float], window_minutes: int) -> MetricContext:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return MetricContext(expr=expr, unavailable="no samples in the window")
    return MetricContext(
        expr=expr,
        current=finite[-1],
        minimum=min(finite),
        maximum=max(finite),
        mean=statistics.fmean(finite),
        change=finite[-1] - finite[0],
        sparkline=sparkline(values),
        samples=[float(f"{v:.4g}") for v in finite[-30:]],
        window_minutes=window_minutes,
    )


def matches(series_labels: dict[str, str], alert_labels: dict[str, str]) -> bool:
    """A series belongs to an alert when every label it has (but __name__) equals the alert's."""
    return all(
        alert_labels.get(name) == value
        for name, value in series_labels.items()
        if name != "__name__"
    )


def varying(series: list[Series]) -> list[str]:
    """The labels whose values differ between the series (a legend names series by them)."""
    keys = sorted({k for one in series for k in one.labels} - {"__name__"})
    return [k for k in keys if len({one.labels.get(k, "") for one in series}) > 1]


def plot_series(series: Series, keys: list[str]) -> PlotSeries:
    """The series for a chart, labelled by the values of `keys` (`okx /depth`); "" without keys."""
    label = clean(" ".join(series.labels.get(k, "") for k in keys).strip())
    points = [
        (t, v if math.isfinite(v) else None)
        for t, v in zip(series.times, series.values, strict=False)
        if math.isfinite(t)
    ]
    return PlotSeries(label=label, points=points)


def graph_url(base: str, expr: str, window_minutes: int) -> str:
    query = urlencode({"g0.expr": expr, "g0.tab": "0", "g0.range_input": f"{window_minutes}m"})
    return f"{base.rstrip('/')}/graph?{query}"


def _analysed(raw: str) -> tuple[str, tuple[str, float] | None]:
    """What to query for an alert expression, and its threshold (both parse it: milliseconds)."""
    return context_expr(raw), threshold(raw)


class ContextBuilder:
    """Builds one MetricContext per firing alert; one query per distinct expression."""

    def __init__(
        self,
        client: PrometheusClient,
        window_minutes: int,
        graph_base: str,
        max_alerts: int,
        timeout: float,
        *,
        parse_timeout: float = PARSE_TIMEOUT_SECONDS,
        metrics: Metrics | None = None,
    ) -> None:
        self._client = client
        self._metrics = metrics
        self._window = window_minutes
        self._graph_base = graph_base
        self._max_alerts = max_alerts
        self._timeout = timeout
        self._parse_timeout = parse_timeout

    async def build(self, alerts: list[Alert], now: datetime | None = None) -> list[MetricContext]:
        """Contexts for the first `max_alerts` alerts, in order; the rest get none.

        Never raises: whatever goes wrong becomes a context with the reason in `unavailable`.
        """
        chosen = alerts[: self._max_alerts]
        try:
            return await self._build(chosen, now or datetime.now(UTC))
        except Exception:  # context is optional: a bug here must not cost the notification
            log.exception("unexpected error building the metric context")
            reason = "internal error while building the metric context"
            return [MetricContext(unavailable=reason) for _ in chosen]

    async def _build(self, chosen: list[Alert], now: datetime) -> list[MetricContext]:
        raw = {a.identity: expr_from_generator_url(a.generator_url) for a in chosen}
        distinct_raw = list(dict.fromkeys(e for e in raw.values() if e))
        analysed = await asyncio.gather(*(self._analyse(e) for e in distinct_raw))
        by_raw = dict(zip(distinct_raw, analysed, strict=True))
        distinct = list(dict.fromkeys(e[0] for e in analysed if isinstance(e, tuple)))
        results = await asyncio.gather(*(self._fetch(e, now) for e in distinct))
        by_expr = dict(zip(distinct, results, strict=True))
        contexts = []
        for alert in chosen:
            expr = raw[alert.identity]
            contexts.append(self._context(alert, by_raw[expr] if expr else None, by_expr))
        return contexts

    async def _analyse(self, raw: str) -> tuple[str, tuple[str, float] | None] | MetricContext:
        """The expression to query and the alert's threshold, or the context saying why there is
        none.

        `app.promql`'s limits keep the parse to milliseconds; the thread and the timeout are a second
        line. The parser holds the GIL while it runs, so they bound the wait, not a runaway parse.
        """
        try:
            async with asyncio.timeout(self._parse_timeout):
                return await asyncio.to_thread(_analysed, raw)
        except TimeoutError:
            return MetricContext(
                unavailable=f"analysing the expression took longer than {self._parse_timeout:g}s"
            )
        except PromQLError as exc:
            log.warning("alert expression not analysed: %s", exc)
            return MetricContext(unavailable=str(exc))
        except Exception:  # context is optional: a bug here must not cost the notification
            log.exception("unexpected error analysing the alert expression")
            return MetricContext(unavailable="internal error while analysing the expression")

    async def _fetch(self, expr: str, now: datetime) -> list[Series] | str:
        step = max(1, math.ceil(self._window * 60 / MAX_POINTS))
        start = now - timedelta(minutes=self._window)
        try:
            async with asyncio.timeout(self._timeout):
                series = await self._client.query_range(expr, start, now, step)
        except TimeoutError:
            self._count("timeout")
            return "Prometheus timed out"
        except PrometheusError as exc:
            self._count("error")
            log.warning("prometheus query failed: %s", exc)
            return str(exc)
        except Exception:  # context is optional: a bug here must not cost the notification
            self._count("error")
            log.exception("unexpected error querying prometheus")
            return "internal error while querying Prometheus"
        self._count("ok" if series else "empty")
        return series

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.prometheus_queries.labels(outcome=outcome).inc()

    def _context(
        self,
        alert: Alert,
        analysed: tuple[str, tuple[str, float] | None] | MetricContext | None,
        by_expr: dict[str, list[Series] | str],
    ) -> MetricContext:
        if analysed is None:
            return MetricContext(unavailable="no expression in generatorURL")
        if isinstance(analysed, MetricContext):
            return analysed.model_copy()
        expr, limit = analysed
        link = graph_url(self._graph_base, expr, self._window)
        result = by_expr[expr]
        if isinstance(result, str):
            return MetricContext(expr=expr, unavailable=result, graph_url=link)
        own = [s for s in result if matches(s.labels, alert.labels)]
        if not own:
            reason = "no matching series" if result else "query returned no series"
            return MetricContext(expr=expr, unavailable=reason, graph_url=link)
        context = summarise(expr, own[0].values, self._window)
        comparison, value = limit or (None, None)
        # The alert's own series first, the expression's others after them for comparison.
        others = [s for s in result if not matches(s.labels, alert.labels)]
        keys = varying(result)
        plots = [plot_series(s, keys) for s in [*own, *others][:MAX_CHART_SERIES]]
        return context.model_copy(
            update={
                "graph_url": link,
                "comparison": comparison,
                "threshold": value,
                "series": plots,
            }
        )
