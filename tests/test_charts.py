"""Charts of an alert's metric: a bounded PNG of the expected size, untrusted labels drawn as plain
text, readable ticks in the metric's unit and UTC, and one ChartError for every failure."""

from __future__ import annotations

import math
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.legend import Legend

from app.charts import (
    HEIGHT_PX,
    MAX_LABEL_CHARS,
    MAX_PNG_BYTES,
    MAX_SERIES,
    PNG_SIGNATURE,
    WIDTH_PX,
    ChartData,
    ChartError,
    Series,
    Unit,
    format_value,
    render,
    unit_for,
)

START = 1_760_000_400.0  # 2025-10-09 09:00 UTC (18:00 in Tokyo)


def minutes(count: int, value: Callable[[int], float] = lambda i: 0.2 + i / 1000) -> Series:
    """One point every 15 s for `count` minutes from START."""
    return Series("p99", [(START + 15 * i, value(i)) for i in range(count * 4)])


def latency(**changes: Any) -> ChartData:
    fields: dict[str, Any] = {
        "title": "APILatencyHigh on binance",
        "series": [minutes(30, lambda i: 0.2 if i < 80 else 0.7)],
        "threshold": 0.5,
        "comparison": ">",
        "firing_since": START + 20 * 60,
        "unit": "seconds",
    }
    return ChartData(**(fields | changes))


def png_size(png: bytes) -> tuple[int, int]:
    length, kind, width, height = struct.unpack(">I4sII", png[8:24])
    assert (length, kind) == (13, b"IHDR")
    return width, height


class Drawn:
    """What the last render put on its chart: the axes and the legend."""

    axes: Axes
    legend: Legend

    def legend_texts(self) -> list[str]:
        return [text.get_text() for text in self.legend.get_texts()]


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> Drawn:
    seen = Drawn()
    original = Figure.legend

    def legend(figure: Figure, *args: Any, **kwargs: Any) -> Legend:
        seen.axes, seen.legend = figure.axes[0], original(figure, *args, **kwargs)
        return seen.legend

    monkeypatch.setattr(Figure, "legend", legend)
    return seen


@pytest.fixture
def tokyo_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A host clock far from UTC, so a chart in local time would show."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_chart_is_a_png_of_the_expected_size() -> None:
    png = render(latency())
    assert png.startswith(PNG_SIGNATURE)
    assert png_size(png) == (WIDTH_PX, HEIGHT_PX) == (800, 400)
    assert len(png) < MAX_PNG_BYTES


def test_the_threshold_and_the_firing_marker_are_labelled(drawn: Drawn) -> None:
    render(latency())
    assert drawn.legend_texts() == ["p99", "threshold > 500 ms", "firing since 09:20 UTC"]


def test_a_firing_marker_before_the_window_stays_in_the_legend_only(drawn: Drawn) -> None:
    render(latency(firing_since=START - 2 * 86400))
    assert drawn.legend_texts()[-1] == "firing since 07 Oct 09:00 UTC"
    assert drawn.axes.get_xlim()[0] > START - 60


def test_times_are_shown_in_utc_hours_and_minutes(drawn: Drawn, tokyo_time: None) -> None:
    render(latency())
    labels = [label.get_text() for label in drawn.axes.get_xticklabels()]
    assert labels == ["09:00", "09:05", "09:10", "09:15", "09:20", "09:25", "09:30"]
    assert drawn.axes.get_title(loc="right") == "UTC"


def test_a_window_of_seconds_gets_ticks_in_seconds(drawn: Drawn) -> None:
    points = [(START + 2 * i, 1.0 if i < 4 else 0.0) for i in range(8)]
    render(latency(series=[Series("", points)], firing_since=START + 12))
    labels = [label.get_text() for label in drawn.axes.get_xticklabels()]
    assert labels == ["09:00:00", "09:00:05", "09:00:10"], "a 14 s window: every 5 s"


def test_y_ticks_are_round_numbers_in_the_unit_shown(drawn: Drawn) -> None:
    memory = minutes(30, lambda i: (1 + i / 60) * 2**20)
    render(latency(series=[memory], threshold=3 * 2**20, unit="bytes"))
    labels = [label.get_text() for label in drawn.axes.get_yticklabels()]
    assert labels == ["1 MiB", "1.5 MiB", "2 MiB", "2.5 MiB", "3 MiB"]


def test_nan_and_infinite_values_leave_gaps() -> None:
    gappy = [math.nan, math.inf, -math.inf, 1e308]
    series = minutes(30, lambda i: gappy[i % 8] if i % 8 < 4 else 0.3)
    bad_times = Series("x", [(math.nan, 1.0), (math.inf, 1.0), (-1.0, 1.0), (START, 2.0)])
    png = render(latency(series=[series, bad_times], threshold=math.nan, firing_since=math.inf))
    assert png_size(png) == (WIDTH_PX, HEIGHT_PX)


@pytest.mark.parametrize(
    "series",
    [[], [Series("empty", [])], [minutes(30, lambda i: math.nan)], [Series("t", [(-1.0, 1.0)])]],
    ids=["no series", "no points", "only NaN", "only bad times"],
)
def test_a_chart_without_a_finite_value_is_a_chart_error(series: list[Series]) -> None:
    with pytest.raises(ChartError, match="no finite value"):
        render(latency(series=series))


def test_a_single_point_gets_a_window_around_it(drawn: Drawn) -> None:
    render(latency(series=[Series("now", [(START, 0.7)])], firing_since=None))
    low, high = drawn.axes.get_xlim()
    assert (low, high) == (START - 300, START + 300)


def test_series_past_the_limit_are_dropped_and_counted(drawn: Drawn) -> None:
    series = [Series(f"exchange=ex{n}", minutes(30).points) for n in range(MAX_SERIES + 3)]
    render(latency(series=series, threshold=None, firing_since=None))
    assert drawn.legend_texts() == [f"exchange=ex{n}" for n in range(MAX_SERIES)]
    assert drawn.axes.get_title(loc="left") == "APILatencyHigh on binance  (+3 more)"


def test_untrusted_labels_are_drawn_as_plain_text(drawn: Drawn) -> None:
    labels = ["$\\frac{1}{0}$", "<b>bold</b>", "$x^$", "fire 🔥\nnext\u202eline", "_hidden"]
    series = [Series(label, minutes(30).points) for label in labels]
    render(latency(title="$x^$ on <i>binance</i>", series=series))
    texts = drawn.legend.get_texts()
    # "$x^$" is not valid mathtext: parsed, it would fail the render instead of showing.
    assert [text.get_text() for text in texts][:5] == [
        "$\\frac{1}{0}$", "<b>bold</b>", "$x^$", "fire ? next line", "_hidden"
    ]  # fmt: skip
    assert not any(text.get_parse_math() or text.get_usetex() for text in texts)
    assert drawn.axes.get_title(loc="left") == "$x^$ on <i>binance</i>"


def test_long_labels_are_cut_in_the_middle(drawn: Drawn) -> None:
    label = '{exchange="binance", endpoint="/api/v3/order", method="POST"}'
    render(latency(series=[Series(label, minutes(30).points)]))
    shown = drawn.legend_texts()[0]
    assert len(shown) == MAX_LABEL_CHARS
    assert shown.startswith('{exchange="binance"') and shown.endswith('method="POST"}')
    assert "…" in shown


@pytest.mark.parametrize(
    ("value", "unit", "label"),
    [
        (0.25, "seconds", "250 ms"),
        (1.5, "seconds", "1.5 s"),
        (0.0004, "seconds", "400 µs"),
        (90, "seconds", "1.5 min"),
        (7200, "seconds", "2 h"),
        (42, "percent", "42%"),
        (0.07, "ratio", "7%"),
        (0.5, "ratio", "50%"),
        (512, "bytes", "512 B"),
        (1536, "bytes", "1.5 KiB"),
        (3 * 2**20, "bytes", "3 MiB"),
        (2.5 * 2**30, "bytes", "2.5 GiB"),
        (1200, "count", "1.2k"),
        (3_400_000, "count", "3.4M"),
        (0.25, "count", "0.25"),
        (-1500, "count", "-1.5k"),
        (0, "seconds", "0"),
        (1234.5, "", "1234"),
        (0.123456, "", "0.123"),
    ],
)
def test_tick_labels_are_readable_in_the_metric_unit(value: float, unit: Unit, label: str) -> None:
    assert format_value(value, unit) == label


@pytest.mark.parametrize(
    ("expr", "unit"),
    [
        ("histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
         "seconds"),
        ("rate(http_request_duration_seconds_sum[5m]) / rate(http_request_duration_seconds_count[5m])",
         "seconds"),
        ("time() - backup_last_success_timestamp_seconds", "seconds"),
        ("rate(process_cpu_seconds_total[1m])", "ratio"),
        ("process_resident_memory_bytes", "bytes"),
        ('rate(node_network_receive_bytes_total{device="eth0"}[5m])', "bytes"),
        ("node_filesystem_avail_bytes / node_filesystem_size_bytes", "ratio"),
        ('sum(rate(http_requests_total{code=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))',
         "ratio"),
        ("cache_hit_ratio", "ratio"),
        ("disk_used_percent", "percent"),
        ('100 * (1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5m])))',
         "percent"),
        ("sum by (exchange) (rate(exchange_api_errors_total[5m]))", "count"),
        ("rate(http_request_duration_seconds_count[5m])", "count"),
        ("process_resident_memory_bytes / 1024 / 1024", ""),
        ("http_request_duration_seconds * 1000", ""),
        ('up{job="binance/api"}', ""),
        ("queue_length", ""),
        ("", ""),
    ],
)  # fmt: skip
def test_unit_for_guesses_from_prometheus_naming(expr: str, unit: str) -> None:
    assert unit_for(expr, "") == unit


def test_unit_for_prefers_the_metric_name_it_is_given() -> None:
    assert unit_for("max_over_time(x[5m])", "x_bytes") == "bytes"


def test_importing_charts_leaves_matplotlib_unloaded() -> None:
    code = "import sys, app.charts; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
