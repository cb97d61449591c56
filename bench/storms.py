"""The storms: many groups posted at once from `clients` posters against a slow LLM, each storm on
a fresh server and store. "Page first, enrich after" is what they prove (issue 15): a group is
paged within PAGE_WITHIN_SECONDS however slow the model, and its message shows the model's
diagnosis once the model answers.

A group's time to page runs from the start of its POST to its first message's arrival on the
last of both channels.

- `storm_phase`: 200 groups of 5 alerts, LLM answering in 1 s: time to page; the time until every
  group's message on both channels shows the model's diagnosis, in the page itself (it waited for
  the LLM) or by an edit of it; LLM calls, edits; peak RSS. Then `repeat_phase` on the same server.
- `slow_storm_phase`: fresh groups, LLM answering in 20 s: time to page only; the server is stopped
  once every group is paged, its diagnoses (minutes away) never awaited.
- `mixed_storm_phase`: warning groups, then critical groups right behind them, LLM 1 s: how soon
  the critical groups are paged past the warnings' backlog; stopped once every group is paged.
"""

from __future__ import annotations

import asyncio
import math
import time

import aiohttp

from bench.measure import (
    Bench,
    ClosedLoop,
    Figures,
    backlog,
    client,
    closed_loop,
    drain,
    others,
    percentile,
    running,
)
from bench.payloads import Notification, groups
from bench.recorder import CHANNELS, Times
from bench.servers import Server, Stores

# The slow-LLM storm waits this long for its pages: ten times PAGE_WITHIN_SECONDS, so a service that
# waits for the model instead (20 s a wave) shows as groups not paged rather than minutes of bench.
SLOW_PAGE_LIMIT = 30.0


def page_times(notes: list[Notification], posted: ClosedLoop, first: Times) -> dict[str, float]:
    """Seconds from each group's POST to its first message on both channels, for the groups
    paged on both."""
    return {
        note.marker: max(first[ch][note.marker] for ch in CHANNELS) - posted.started[index]
        for index, note in enumerate(notes)
        if all(note.marker in first[ch] for ch in CHANNELS)
    }


def spread(prefix: str, values: list[float]) -> Figures:
    return {
        f"{prefix}_p50": percentile(values, 50),
        f"{prefix}_p99": percentile(values, 99),
        f"{prefix}_max": max(values, default=math.nan),
    }


def storm_figures(
    notes: list[Notification],
    posted: ClosedLoop,
    began: float,
    first: Times,
    diagnosed: Times,
    counts: dict[str, int],
) -> Figures:
    """Time to page, all diagnosed (the last group's diagnosis on both channels, from the first
    POST), lost and never diagnosed groups, edits applied and pages sent preliminary."""
    markers = [n.marker for n in notes]
    pages = page_times(notes, posted, first)
    done = [m for m in markers if all(m in diagnosed[ch] for ch in CHANNELS)]
    last = max((diagnosed[ch][m] for m in done for ch in CHANNELS), default=math.nan)
    return {
        **spread("storm_page", list(pages.values())),
        "storm_diagnosed": last - began if len(done) == len(markers) else math.nan,
        "storm_lost": len(markers) - len(pages),
        "storm_undiagnosed": len(markers) - len(done),
        "storm_edits": sum(counts.get(f"{ch} edits", 0) for ch in CHANNELS),
        "storm_preliminary": sum(counts.get(f"{ch} preliminary", 0) for ch in CHANNELS),
        "storm_refused": others(posted.statuses),
    }


def edits_note(counts: dict[str, int]) -> str:
    """Per channel: pages sent preliminary, edits applied (and refused); flagged when a channel's
    edits are not one per preliminary page."""
    parts = []
    for ch in CHANNELS:
        preliminary, edits = counts.get(f"{ch} preliminary", 0), counts.get(f"{ch} edits", 0)
        refused = counts.get(f"{ch} edits refused", 0)
        part = f"{ch} {preliminary} preliminary, {edits} edited"
        part += f" ({refused} edits refused)" if refused else ""
        parts.append(part + (" MISMATCH" if edits != preliminary else ""))
    return "; ".join(parts)


async def storm_phase(bench: Bench, stores: Stores) -> Figures:
    """The storm with a slow LLM, the peak RSS after it, then the repeat on the same server.

    DEDUP_WINDOW_SECONDS=1: Alertmanager's repeat of still-firing alerts has the same idempotency
    key (group, status, and each alert's fingerprint, startsAt and endsAt, which stays the zero
    time while it fires), so it is a new notification only once the dedup window has passed, as
    with a `repeat_interval` longer than the window (what README asks for). A 1 s window lets the
    repeat come seconds after the storm rather than 10 minutes.
    """
    notes = groups(bench.groups, bench.group_size)
    markers = [n.marker for n in notes]
    await bench.fakes.reset(llm_delay=bench.llm_delay)
    env = {**bench.service_env, "DEDUP_WINDOW_SECONDS": "1"}
    server = bench.launcher.service(stores.new_url(), env)
    async with running(server), client() as session:
        began = time.monotonic()
        posted = await closed_loop(session, server, [n.body for n in notes], bench.clients)
        _, diagnosed = await bench.fakes.wait(markers, "diagnosed", seconds=bench.storm_limit)
        first = await bench.fakes.arrivals(markers, "first")
        await drain(session, server, 300)
        stats = await bench.fakes.stats()
        figures = storm_figures(notes, posted, began, first, diagnosed, stats["counts"])
        figures["storm_llm"] = stats["llm_calls"]
        webhook, pipeline = server.peak_rss_mib()
        figures |= {
            "rss_storm": webhook + pipeline,
            "rss_webhook": webhook,
            "rss_pipeline": pipeline,
        }
        bench.say(
            f"  storm, {bench.groups} groups x {bench.group_size} alerts, LLM {bench.llm_delay:g} s"
            f": time to page p50 {figures['storm_page_p50']:.2f} s, p99 "
            f"{figures['storm_page_p99']:.2f} s, max {figures['storm_page_max']:.2f} s; all "
            f"diagnosed in {figures['storm_diagnosed']:.2f} s (floor {bench.storm_floor:.1f} s); "
            f"{figures['storm_llm']:.0f} LLM calls, {figures['storm_lost']:.0f} lost, "
            f"{figures['storm_undiagnosed']:.0f} never diagnosed; {edits_note(stats['counts'])}; "
            f"peak RSS {figures['rss_storm']:.0f} MiB (webhook's process {webhook:.0f}, "
            f"pipeline's {pipeline:.0f})"
        )
        await asyncio.sleep(max(0.0, posted.last_answer + 1.2 - time.monotonic()))
        figures |= await repeat_phase(bench, session, server, notes)
    return figures


async def repeat_phase(
    bench: Bench, session: aiohttp.ClientSession, server: Server, notes: list[Notification]
) -> Figures:
    """The same bodies again: each group's still-firing alerts, past the dedup window.

    Done when every group has a reply on both channels, or when the backlog has been 0 for 2 s
    (a service that sends no reply for a repeat).
    """
    markers = [n.marker for n in notes]
    await bench.fakes.reset(llm_delay=bench.llm_delay)
    began = time.monotonic()
    posted = await closed_loop(session, server, [n.body for n in notes], bench.clients)
    ended, idle_since = math.nan, math.nan
    arrivals: Times = {}
    while time.monotonic() - began < bench.storm_limit:
        done, arrivals = await bench.fakes.wait(markers, "reply", seconds=0.5)
        if done:
            ended = max(max(times.values()) for times in arrivals.values())
            break
        if await backlog(session, server) != 0:
            idle_since = math.nan
        elif math.isnan(idle_since):
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since >= 2:
            ended = idle_since
            break
    await drain(session, server, 300)
    replied = sum(all(m in arrivals.get(ch, {}) for ch in CHANNELS) for m in markers)
    figures = {
        "repeat_llm": (await bench.fakes.stats())["llm_calls"],
        "repeat_s": ended - began,
        "repeat_duplicates": posted.statuses[200],
        "repeat_replied": replied,
        "repeat_refused": others(posted.statuses) - posted.statuses[200],
    }
    bench.say(
        f"  repeat of the {len(notes)} groups: {figures['repeat_llm']:.0f} LLM calls, "
        f"processed in {figures['repeat_s']:.2f} s, {replied} groups got a reply on both "
        f"channels, {figures['repeat_duplicates']:.0f} answered as HTTP duplicates"
    )
    return figures


async def paged(
    bench: Bench, stores: Stores, notes: list[Notification], llm_delay: float, limit: float
) -> tuple[dict[str, float], int]:
    """Post the groups to a fresh server, wait until each is paged on both channels (or `limit`
    seconds), stop the server: the groups' time to page, and posts answered other than 202."""
    await bench.fakes.reset(llm_delay=llm_delay)
    server = bench.launcher.service(stores.new_url(), bench.service_env)
    async with running(server), client() as session:
        posted = await closed_loop(session, server, [n.body for n in notes], bench.clients)
        _, first = await bench.fakes.wait([n.marker for n in notes], "first", seconds=limit)
    return page_times(notes, posted, first), others(posted.statuses)


async def slow_storm_phase(bench: Bench, stores: Stores) -> Figures:
    """Fresh groups with a model that takes 20 s: every group paged all the same."""
    notes = groups(bench.groups, bench.group_size)
    began = time.monotonic()
    pages, refused = await paged(bench, stores, notes, bench.slow_llm_delay, SLOW_PAGE_LIMIT)
    figures = {
        **spread("slow_page", list(pages.values())),
        "slow_unpaged": len(notes) - len(pages),
    }
    bench.say(
        f"  slow-LLM storm, {len(notes)} groups, LLM {bench.slow_llm_delay:g} s: time to page "
        f"p50 {figures['slow_page_p50']:.2f} s, p99 {figures['slow_page_p99']:.2f} s, max "
        f"{figures['slow_page_max']:.2f} s; {figures['slow_unpaged']:.0f} groups not paged within "
        f"{SLOW_PAGE_LIMIT:g} s, {refused} posts refused; {time.monotonic() - began:.1f} s in all"
    )
    return figures


def critical_count(bench: Bench) -> int:
    """The mixed storm's critical groups: a tenth (20 of 200), at least one."""
    return max(1, bench.groups // 10)


async def mixed_storm_phase(bench: Bench, stores: Stores) -> Figures:
    """Warning groups, then critical ones right after: the critical pages must not queue behind
    the warnings."""
    criticals = critical_count(bench)
    warning_notes = groups(bench.groups - criticals, bench.group_size, severity="warning")
    critical_notes = groups(criticals, bench.group_size, severity="critical")
    notes = warning_notes + critical_notes
    pages, refused = await paged(bench, stores, notes, bench.llm_delay, bench.storm_limit)
    critical = [pages[n.marker] for n in critical_notes if n.marker in pages]
    warning = [pages[n.marker] for n in warning_notes if n.marker in pages]
    figures = {
        **spread("mixed_critical", critical),
        "mixed_warning_p99": percentile(warning, 99),
        "mixed_unpaged": len(notes) - len(pages),
    }
    bench.say(
        f"  mixed storm, {len(warning_notes)} warning then {criticals} critical groups, LLM "
        f"{bench.llm_delay:g} s: critical time to page p50 {figures['mixed_critical_p50']:.2f} s, "
        f"p99 {figures['mixed_critical_p99']:.2f} s, max {figures['mixed_critical_max']:.2f} s; "
        f"warning p50 {percentile(warning, 50):.2f} s, p99 {figures['mixed_warning_p99']:.2f} s; "
        f"{figures['mixed_unpaged']:.0f} groups not paged, {refused} posts refused"
    )
    return figures
