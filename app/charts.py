"""A PNG of an alert's metric around the moment it crossed its threshold, for a phone at night.

`render` draws with matplotlib's object API on the Agg canvas, never pyplot (global state, not
thread-safe), imported on first use. The service never calls it itself: app/chart_process.py runs
it in a renderer process of its own. Every failure is one `ChartError`: a chart must never hold
back the message.

Titles and labels are untrusted text, drawn only as text: no mathtext, control characters and glyphs
the font lacks replaced, long ones cut in the middle. The first MAX_SERIES series are drawn (put the
alert's own first), the title counts the rest. NaN and infinities leave a gap in the line, as in
Prometheus' graphs; with no finite value at all, ChartError, not an empty frame.
"""

from __future__ import annotations

import io
import math
import re
import threading
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.ft2font import FT2Font

Unit = Literal["seconds", "percent", "ratio", "bytes", "count", ""]

MAX_SERIES = 5
MAX_LABEL_CHARS = 40  # a legend column
MAX_TITLE_CHARS = 56
MAX_PNG_BYTES = 300_000
WIDTH_PX, HEIGHT_PX, DPI = 800, 400, 100
FONT = "DejaVu Sans"  # ships inside matplotlib: the same glyphs on every host

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MAX_TIME = 2**37  # unix seconds: year 6325, within datetime's reach
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b")  # no red: red is the alert's
_ALERT = "#d62728"
_TICK_SECONDS = (
    *(1, 2, 5, 10, 15, 30),  # a window of seconds (a freshly started stack)
    *(60, 120, 300, 600, 900, 1800),
    *(3600, 7200, 10800, 21600, 43200, 86400),
)
_TEXT: dict[str, Any] = {"parse_math": False, "usetex": False, "fontfamily": FONT}
_SCALES: dict[str, tuple[tuple[float, str], ...]] = {
    "seconds": ((86400, " d"), (3600, " h"), (60, " min"), (1, " s"), (1e-3, " ms"), (1e-6, " µs")),
    "bytes": ((2**40, " TiB"), (2**30, " GiB"), (2**20, " MiB"), (2**10, " KiB"), (1, " B")),
    "count": ((1e9, "G"), (1e6, "M"), (1e3, "k"), (1, "")),
}

_DRAWING = threading.Lock()  # matplotlib's cached fonts are shared between threads, and not safe


class ChartError(Exception):
    """No chart: no finite data, a rendering failure, a PNG over MAX_PNG_BYTES, or a timeout."""


@dataclass(frozen=True)
class Series:
    label: str
    points: list[tuple[float, float]]  # (unix seconds, value)


@dataclass(frozen=True)
class ChartData:
    title: str  # "APILatencyHigh on binance"
    series: list[Series]
    threshold: float | None = None
    comparison: str | None = None  # ">", "<=", ...: labels the threshold line
    firing_since: float | None = None  # unix seconds
    unit: Unit = ""


# Label values are not names, `by (job)` lists labels, `[5m]` is a range, `foo(` a function.
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_NOT_METRICS = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)|\[[^\]]*\]", re.IGNORECASE
)
_NAME = re.compile(r"(?<![\w:.])([a-zA-Z_:][\w:]*)\b(?!\s*\()")
_KEYWORDS = frozenset({"bool", "offset", "and", "or", "unless", "atan2", "inf", "nan"})
_PERCENT = re.compile(r"(?<![\w.])100\s*\*|\*\s*100(?![\w.])")
_SCALED = re.compile(r"[*/]\s*[\d.]|(?<![\w.])[\d.]+(?:e[+-]?\d+)?\s*[*/]", re.IGNORECASE)
_RATES = re.compile(r"\b(?:rate|irate|increase|deriv)\s*\(")
_SUFFIXES: tuple[tuple[str, Unit], ...] = (
    ("_seconds", "seconds"),
    ("_bytes", "bytes"),
    ("_ratio", "ratio"),
    ("_percent", "percent"),
)


def unit_for(expr: str, metric_name: str = "") -> Unit:
    """Guess the unit of the plotted expression (comparison already stripped, see
    `app.promql.context_expr`) from Prometheus naming conventions; "" when unsure, since plain
    numbers beat a wrong unit."""
    text = _NOT_METRICS.sub(" ", _STRINGS.sub('""', expr))
    names = [n for n in _NAME.findall(text) if n.lower() not in _KEYWORDS]
    name = (metric_name or (names[0] if names else "")).lower()
    if _PERCENT.search(text):
        return "percent"
    if "/" in text and not _SCALED.search(text):
        averaged = "_sum" in text and "_count" in text  # rate(x_sum) / rate(x_count): x's unit
        return _unit_of_name(name, rated=False) if averaged else "ratio"
    if _SCALED.search(text):  # `x_seconds * 1000` is no longer in seconds
        return ""
    return _unit_of_name(name, rated=bool(_RATES.search(text)))


def _unit_of_name(name: str, *, rated: bool) -> Unit:
    if name.endswith("_count"):  # a histogram's number of observations, whatever its unit
        return "count"
    if rated and name.endswith("_seconds_total"):  # busy seconds per second, as CPU's
        return "ratio"
    base = name.removesuffix("_total").removesuffix("_bucket").removesuffix("_sum")
    unit = next((unit for suffix, unit in _SUFFIXES if base.endswith(suffix)), None)
    return unit or ("count" if name.endswith("_total") else "")


def format_value(value: float, unit: Unit) -> str:
    """A tick label: "250 ms", "1.5 s", "42%" (ratio 0.42 too), "3 MiB", "1.2k"."""
    if not math.isfinite(value) or value == 0:
        return _number(value)
    if unit == "percent":
        return f"{_number(value)}%"
    if unit == "ratio":
        return f"{_number(value * 100)}%"
    size, suffix = _scale(value, unit)
    return f"{_number(value / size)}{suffix}"


def _scale(value: float, unit: Unit) -> tuple[float, str]:
    scales = _SCALES.get(unit, ((1, ""),))
    return next((s for s in scales if abs(value) >= s[0]), scales[-1])


def _number(value: float) -> str:
    """At most three significant digits, no exponent from 0.001 up: 1.5, 250, 1024, 0.025."""
    return f"{value + 0.0:.0f}" if abs(value) >= 100 else f"{value + 0.0:.3g}"


def render(data: ChartData) -> bytes:
    """A WIDTH_PX x HEIGHT_PX PNG of at most MAX_PNG_BYTES; ChartError on any failure."""
    with _DRAWING:
        try:
            png = _draw(data)
        except ChartError:
            raise
        except Exception as exc:  # matplotlib's, numpy's, datetime's: one type for the caller
            raise ChartError(f"chart not rendered: {type(exc).__name__}: {exc}") from exc
    if not png.startswith(PNG_SIGNATURE) or len(png) > MAX_PNG_BYTES:
        raise ChartError(f"chart not a PNG under {MAX_PNG_BYTES} bytes ({len(png)} bytes)")
    return png


def _draw(data: ChartData) -> bytes:
    # Imported here: a service with charts off never pays for matplotlib (about 0.5 s, 60 MB).
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415
    from matplotlib.font_manager import FontProperties, findfont, get_font  # noqa: PLC0415

    lines = [(s.label, *_line(s.points)) for s in data.series[:MAX_SERIES]]
    lines = [line for line in lines if any(map(math.isfinite, line[2]))]
    if not lines:
        raise ChartError("no finite value to chart")
    font = get_font(findfont(FontProperties(family=FONT)))
    figure = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI, facecolor="white")
    FigureCanvasAgg(figure)  # Agg whatever MPLBACKEND says
    ax = figure.add_subplot()
    handles, labels = _plot(ax, data, lines, font)
    _style(ax, data, font)
    # Below the plot, never over the data: two columns, as many rows as it takes.
    rows = math.ceil(len(handles) / 2)
    figure.subplots_adjust(left=0.1, right=0.97, top=0.91, bottom=0.12 + 0.055 * rows)
    legend = figure.legend(
        handles, labels, loc="lower left", bbox_to_anchor=(0.1, 0.005), ncols=2, fontsize=10,
        frameon=False, handlelength=1.8, columnspacing=1.5,
    )  # fmt: skip
    for text in legend.get_texts():
        text.update(_TEXT)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _plot(
    ax: Axes, data: ChartData, lines: list[tuple[str, list[float], list[float]]], font: FT2Font
) -> tuple[list[Artist], list[str]]:
    """Draw the series, the threshold and the firing marker; the legend's handles and labels."""
    handles: list[Artist] = []
    labels: list[str] = []
    for color, (label, xs, ys) in zip(_COLORS, lines, strict=False):
        few = sum(map(math.isfinite, ys)) < 30  # isolated points need a marker to show
        (line,) = ax.plot(xs, ys, color=color, linewidth=2, marker="o" if few else "", ms=3)
        handles.append(line)
        labels.append(_drawable(label or "value", font, MAX_LABEL_CHARS))
    times = [x for _, xs, _ in lines for x in xs]
    start, end = min(times), max(times)
    if data.threshold is not None and _plottable(data.threshold):
        handles.append(ax.axhline(data.threshold, color=_ALERT, linestyle="--", linewidth=1.5))
        operator = f"{data.comparison} " if data.comparison else ""
        threshold = f"threshold {operator}{format_value(data.threshold, data.unit)}"
        labels.append(_drawable(threshold, font, MAX_LABEL_CHARS))
    if data.firing_since is not None and 0 <= data.firing_since < _MAX_TIME:
        since = data.firing_since
        if since < end:
            ax.axvspan(max(since, start), end, color=_ALERT, alpha=0.08, linewidth=0)
        handles.append(ax.axvline(since, color=_ALERT, linewidth=1.5))
        day = "%H:%M" if since // 86400 == end // 86400 else "%d %b %H:%M"
        labels.append(f"firing since {_clock(since, day)} UTC")
    # The data's window only: a firing marker outside it stays in the legend.
    pad = (end - start) / 100 or 300
    ax.set_xlim(start - pad, end + pad)
    return handles, labels


def _style(ax: Axes, data: ChartData, font: FT2Font) -> None:
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415

    more = len(data.series) - MAX_SERIES
    suffix = f"  (+{more} more)" if more > 0 else ""
    title = _drawable(data.title, font, MAX_TITLE_CHARS - len(suffix)) + suffix
    ax.set_title(title, loc="left", fontsize=14, fontweight="bold", color="#222222", **_TEXT)
    ax.set_title("UTC", loc="right", fontsize=10, color="#666666", **_TEXT)

    low, high = ax.get_xlim()
    day = high - low <= 20 * 3600
    ticks = _time_ticks(low, high, most=7 if day else 5)
    layout = "%d %b %H:%M" if not day else "%H:%M:%S" if any(t % 60 for t in ticks) else "%H:%M"
    ax.set_xticks(ticks, [_clock(t, layout) for t in ticks])
    # Round numbers in the unit shown (1, 2, 3 MiB), not in bytes (0.95, 1.91, 2.86 MiB).
    low, high = ax.get_ylim()
    size = _scale(max(abs(low), abs(high)), data.unit)[0]
    steps = MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]).tick_values(low / size, high / size)
    ticks = [tick * size for tick in steps if low <= tick * size <= high]
    ax.set_yticks(ticks, [format_value(tick, data.unit) for tick in ticks])

    ax.tick_params(labelsize=11, colors="#333333")
    ax.grid(True, color="#e0e0e0", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _time_ticks(low: float, high: float, most: int) -> list[float]:
    """Ticks on round UTC times (every 5 min, hour, day...), at most `most` of them."""
    span = (high - low) / most
    step = next((s for s in _TICK_SECONDS if s >= span), math.ceil(span / 86400) * 86400)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) // step) + 1)]


def _clock(t: float, layout: str) -> str:
    return datetime.fromtimestamp(t, UTC).strftime(layout)


def _plottable(value: float) -> bool:
    # Near float's limits matplotlib's own arithmetic overflows; no metric lives there.
    return math.isfinite(value) and abs(value) < 1e100


def _line(points: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """Times and values, NaN where a value cannot be plotted (a gap); times out of range dropped."""
    xs, ys = [], []
    for t, y in points:
        if 0 <= t < _MAX_TIME:  # NaN fails this too
            xs.append(float(t))
            ys.append(float(y) if _plottable(y) else math.nan)
    return xs, ys


def _drawable(text: str, font: FT2Font, limit: int) -> str:
    """Cut in the middle, control characters as spaces, glyphs the font lacks as "?"."""
    if len(text) > limit:
        half = (limit - 1) // 2
        text = f"{text[: limit - 1 - half]}…{text[len(text) - half :]}"
    return "".join(_glyph(c, font) for c in text)


def _glyph(c: str, font: FT2Font) -> str:
    if unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp"}:  # newlines, bidi overrides...
        return " "
    return c if font.get_char_index(ord(c)) else "?"
