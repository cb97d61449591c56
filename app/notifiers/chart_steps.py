"""Which charts a message carries, and sending them without ever costing the message.

A new page or an escalation carries one chart per distinct expression among its firing alerts that
have series (the escalation's new alerts first), at most MAX_CHARTS: the alerts sharing an expression
(`APIDown` on binance, bybit and okx) are one chart with a line each. Follow-ups carry none.

Each chart is a delivery step of its own (`chart-1`, `chart-2`), taken after the text went out: a
retry never sends a chart twice, and a chart that cannot be rendered or uploaded is logged and given
up, never retried and never a failure of the delivery (app/charts.py renders in a process of its
own, bounded in time and size). Channels sending the same chart share one rendering.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from app.chart_process import render_async
from app.charts import ChartData, ChartError, Series, unit_for
from app.models import AlertView, EnrichedNotification, PlotSeries
from app.notifiers.base import Progress

log = logging.getLogger(__name__)

MAX_CHARTS = 2
RENDER_SECONDS = 10.0  # includes the wait behind other charts and matplotlib's first import
TARGET_LABELS = ("exchange", "instance", "job")

RENDERS_KEPT = 8  # charts rendered lately, for the other channels of the same message
# Charts drawing or waiting to be drawn at most: past it (a storm) a new chart is given up at once,
# so pages and their workers never queue behind the renderer (one chart takes 70-500 ms).
RENDERS_QUEUED = 4

Upload = Callable[[bytes, ChartData], Awaitable[str | None]]
# Renderings by the chart's content, on the event loop that started them.
_renders: OrderedDict[str, tuple[asyncio.AbstractEventLoop, asyncio.Task[bytes]]] = OrderedDict()
_queued: set[asyncio.Task[bytes]] = set()


def charts_for(n: EnrichedNotification) -> list[ChartData]:
    """The charts of a new page or an escalation; none for follow-ups or without series."""
    if n.kind not in ("new", "escalation"):
        return []
    by_expr: dict[str, list[AlertView]] = {}
    for alert in n.firing:
        if alert.context is not None and alert.context.series:
            by_expr.setdefault(alert.context.expr, []).append(alert)
    return [chart(expr, alerts, n) for expr, alerts in list(by_expr.items())[:MAX_CHARTS]]


def chart(expr: str, alerts: list[AlertView], n: EnrichedNotification) -> ChartData:
    """The alerts' series in one chart (each series once, the lead alert's first), titled with
    their name and targets, with the lead alert's threshold and the earliest start."""
    lead = alerts[0].context
    assert lead is not None  # charts_for passes alerts with series only
    targets = list(dict.fromkeys(t for a in alerts if (t := target(a))))
    title = alerts[0].name
    if targets:
        title += f" {n.words.on} {n.words.names(targets)}"
    several = len(alerts) > 1
    series: dict[str, Series] = {}  # by label: alerts of one expression share its other series
    for alert in alerts:
        for plot in alert.context.series if alert.context else []:
            # A lone series is named by its expression (`api_health_status`), not "value".
            label = plot.label or (target(alert) if several else None) or expr
            series.setdefault(label, Series(label=label, points=_points(plot)))
    starts = [a.starts_at.timestamp() for a in alerts if a.starts_at]
    return ChartData(
        title=title,
        series=list(series.values()),
        threshold=lead.threshold,
        comparison=lead.comparison,
        firing_since=min(starts, default=None),
        unit=unit_for(expr),
    )


def target(alert: AlertView) -> str | None:
    labels = alert.identifying_labels
    return next((labels[k] for k in TARGET_LABELS if labels.get(k)), None)


def _points(plot: PlotSeries) -> list[tuple[float, float]]:
    return [(t, math.nan if v is None else v) for t, v in plot.points]


async def send_charts(
    channel: str, notification: EnrichedNotification, progress: Progress, upload: Upload
) -> None:
    """Render and upload each chart of the message as step `chart-k`; failures are logged."""
    for index, data in enumerate(charts_for(notification), 1):
        await progress.step(
            f"chart-{index}", functools.partial(_best_effort, channel, data, upload)
        )


class RendererBusyError(ChartError):
    """The chart was given up at once: a storm, not a fault (logged at INFO, not WARNING)."""


def rendering(data: ChartData) -> asyncio.Task[bytes]:
    """The chart's rendering: the one another channel started for the same chart, else a new one."""
    loop = asyncio.get_running_loop()
    key = hashlib.sha256(repr(data).encode()).hexdigest()
    known = _renders.get(key)
    if known is not None and known[0] is loop:
        _renders.move_to_end(key)
        return known[1]
    waiting = [t for t in _queued if t.get_loop() is loop]
    if len(waiting) >= RENDERS_QUEUED:
        raise RendererBusyError(f"renderer busy ({len(waiting)} charts queued)")
    task = loop.create_task(render_async(data, RENDER_SECONDS))
    _queued.add(task)
    task.add_done_callback(_queued.discard)
    _renders[key] = (loop, task)
    while len(_renders) > RENDERS_KEPT:
        _renders.popitem(last=False)
    return task


async def _best_effort(channel: str, data: ChartData, upload: Upload) -> str | None:
    try:
        png = await asyncio.shield(rendering(data))
        return await upload(png, data)
    except RendererBusyError as exc:
        log.info("%s: chart %r skipped: %s", channel, data.title, exc)
        return None
    except Exception as exc:
        log.warning("%s: chart %r not sent: %s", channel, data.title, exc)
        return None
