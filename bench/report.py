"""The table `make bench` ends with: each figure's median and spread over the runs, against its
target (issue 10's; the storms' time to page and diagnoses, issue 15's) when it has one."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from bench.measure import Bench, Figures
from bench.storms import critical_count


@dataclass(frozen=True)
class Target:
    """`value op bound`, shown as `text`."""

    op: str  # "<=", ">=" or "=="
    bound: float
    text: str

    def met(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.op == "<=":
            return value <= self.bound
        if self.op == ">=":
            return value >= self.bound
        return value == self.bound


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    digits: int
    target: Target | None = None


def at_most(bound: float, unit: str = "") -> Target:
    return Target("<=", bound, f"<= {bound:g}{unit}")


def at_least(bound: float, unit: str = "") -> Target:
    return Target(">=", bound, f">= {bound:g}{unit}")


def exactly(value: float) -> Target:
    return Target("==", value, f"= {value:g}")


def figures(backend: str, bench: Bench, token_unit: str) -> list[Figure]:
    """Every row of a backend's table, in order; PostgreSQL's ack targets are its own."""
    postgres = backend == "postgresql"
    rate = f"{bench.rate:g}/s"
    storm = f"{bench.groups} groups x {bench.group_size}, LLM {bench.llm_delay:g} s"
    slow = f"LLM {bench.slow_llm_delay:g} s"
    criticals = critical_count(bench)
    mixed = f"{bench.groups - criticals} warning + {criticals} critical"
    page = at_most(3, " s")  # PAGE_WITHIN_SECONDS's default
    if (bench.groups, bench.llm_concurrency, bench.llm_delay) == (200, 16, 1.0):
        storm_target = at_most(13, " s")
    else:  # other sizes: 0.5 s over the floor (the 13 s is its 13 waves, no more)
        storm_target = at_most(round(bench.storm_floor + 0.5, 2), " s")
    return [
        Figure("ack_p50", f"ack p50 at {rate}, 10-alert payloads (ms)", 1),
        Figure("ack_p99", f"ack p99 at {rate} (ms)", 1, at_most(15 if postgres else 10)),
        Figure("bare_p50", f"  bare FastAPI ack p50 at {rate} (ms)", 1),
        Figure("bare_p99", f"  bare FastAPI ack p99 at {rate} (ms)", 1),
        Figure("rps", f"ack throughput, {bench.clients} clients (req/s)", 0),
        Figure("bare_rps", f"  bare FastAPI throughput, {bench.clients} clients (req/s)", 0),
        Figure("ratio", "throughput vs bare FastAPI (%)", 0, at_least(40 if postgres else 50)),
        Figure("ack_errors", "ack answers other than 202", 0, exactly(0)),
        Figure("late", "  bench client behind its send schedule, worst (ms)", 1),
        Figure("processed", "notifications processed, 10 alerts, instant LLM (/s)", 0),
        Figure("pipe_p50", "pipeline POST -> first message p50 (ms)", 1, at_most(30)),
        Figure("pipe_p99", "pipeline POST -> first message p99 (ms)", 1, at_most(100)),
        Figure("pipe_all_p50", "  POST -> message on both channels p50 (ms)", 1),
        Figure("pipe_all_p99", "  POST -> message on both channels p99 (ms)", 1),
        Figure("storm_page_p50", f"storm {storm}: time to page p50 (s)", 2),
        Figure("storm_page_p99", "storm time to page p99 (s)", 2, page),
        Figure("storm_page_max", "  storm time to page max (s)", 2),
        Figure("storm_diagnosed", "storm all diagnosed by the LLM (s)", 2, storm_target),
        Figure("storm_llm", "storm LLM calls", 0, exactly(bench.groups)),
        Figure("storm_lost", "storm groups lost", 0, exactly(0)),
        Figure("storm_undiagnosed", "  storm groups never shown the LLM diagnosis", 0, exactly(0)),
        Figure("storm_edits", "storm edits applied (Slack + Telegram)", 0),
        Figure("storm_preliminary", "  storm pages sent preliminary (Slack + Telegram)", 0),
        Figure("storm_refused", "storm posts answered other than 202", 0, exactly(0)),
        Figure("repeat_llm", "repeat of the storm's groups: LLM calls", 0, exactly(0)),
        Figure("repeat_s", "  repeat processed (s)", 2),
        Figure("repeat_duplicates", "  repeat answered as HTTP duplicate", 0, exactly(0)),
        Figure("repeat_refused", "  repeat posts answered other than 202 or 200", 0, exactly(0)),
        Figure("repeat_replied", "  repeat groups replied on both channels", 0),
        Figure("slow_page_p50", f"slow-LLM storm, {slow}: time to page p50 (s)", 2),
        Figure("slow_page_p99", "slow-LLM storm time to page p99 (s)", 2, page),
        Figure("slow_page_max", "  slow-LLM storm time to page max (s)", 2),
        Figure("slow_unpaged", "  slow-LLM storm groups not paged", 0, exactly(0)),
        Figure("mixed_critical_p50", f"mixed {mixed}: critical page p50 (s)", 2),
        Figure("mixed_critical_p99", "mixed storm critical time to page p99 (s)", 2),
        Figure("mixed_critical_max", "mixed storm critical time to page max (s)", 2, page),
        Figure("mixed_warning_p99", "  mixed storm warning time to page p99 (s)", 2),
        Figure("mixed_unpaged", "  mixed storm groups not paged", 0, exactly(0)),
        Figure("tokens_1", f"prompt, 1 alert ({token_unit})", 0, at_most(1500)),
        Figure("tokens_100", f"prompt, 100-alert group ({token_unit})", 0, at_most(6000)),
        Figure("rss_storm", "peak RSS after the storm, webhook + pipeline (MiB)", 0, at_most(150)),
        Figure("rss_webhook", "  of it the webhook's process (MiB)", 0),
        Figure("rss_pipeline", "  of it the pipeline's process (MiB)", 0),
        Figure("rss_ack", f"  peak RSS after the ack phase at {rate} (MiB)", 0),
    ]


def _number(value: float, digits: int) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def row(figure: Figure, runs: list[Figures]) -> str:
    values = [run.get(figure.key, math.nan) for run in runs]  # not measured: NaN
    finite = [v for v in values if not math.isnan(v)]
    # A run that failed to measure (NaN) counts against the target, not for it.
    median = statistics.median(values) if values and len(finite) == len(values) else math.nan
    spread = (
        f"{_number(min(finite), figure.digits)} - {_number(max(finite), figure.digits)}"
        if finite
        else "n/a"
    )
    if len(finite) < len(values):
        spread += f" ({len(values) - len(finite)} failed)"
    target, verdict = "", ""
    if figure.target is not None:
        target = figure.target.text
        verdict = "✓" if figure.target.met(median) else "✗"
    return (
        f"{figure.label:<56}{_number(median, figure.digits):>9}  {spread:<22}{target:<11}{verdict}"
    )


def table(backend: str, description: str, bench: Bench, runs: list[Figures], unit: str) -> str:
    """One backend's table: a header line, then one row per figure."""
    heading = f"{backend}: {description}; {len(runs)} run(s)"
    columns = f"{'figure':<56}{'median':>9}  {'spread (min - max)':<22}{'target':<11}"
    lines = [heading, columns, "-" * len(columns)]
    lines += [row(figure, runs) for figure in figures(backend, bench, unit)]
    return "\n".join(lines)
