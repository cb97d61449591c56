"""Console notifier: what `make run` prints when no chat channel is configured."""

from __future__ import annotations

import sys
from typing import TextIO

from app.formatting import fired_for, number, shorten, signed, timestamp
from app.language import Words
from app.models import AlertView, EnrichedNotification, MetricContext
from app.notifiers.base import Progress, Sent, Thread
from app.notifiers.layout import (
    follow_ups,
    headline,
    history_note,
    label_text,
    more_alerts,
    new_mark,
    resolved_note,
)

RULE = "─" * 72


def _context_lines(context: MetricContext | None, words: Words) -> list[str]:
    if context is None:
        return []
    if context.unavailable:
        return [f"    {words.metrics_unavailable}: {context.unavailable}"]
    return [
        f"    metric   {context.expr}",
        f"    {words.now} {number(context.current)}   min {number(context.minimum)}"
        f"   max {number(context.maximum)}   {words.mean} {number(context.mean)}"
        f"   Δ {signed(context.change)} {words.over.format(window=f'{context.window_minutes}m')}",
        f"    trend    {context.sparkline}",
    ]


def _alert_lines(alert: AlertView, words: Words) -> list[str]:
    name = f"{alert.name}{new_mark(alert, words)}"
    lines = [f"  • [{alert.status}] {name} {label_text(alert)}".rstrip()]
    if alert.status == "resolved":
        lines.append(f"    {resolved_note(alert, words)}")
    else:
        started = f"{timestamp(alert.starts_at)} ({fired_for(alert.starts_at, None)})"
        lines.append(f"    {words.since} {started}")
    if alert.summary:
        lines.append(f"    summary: {shorten(alert.summary, 300)}")
    if alert.description:
        lines.append(f"    description: {shorten(alert.description, 600)}")
    lines += _context_lines(alert.context, words)
    if alert.context and alert.context.graph_url:
        lines.append(f"    {words.graph}: {alert.context.graph_url}")
    return lines


def _follow_up_lines(n: EnrichedNotification) -> list[str]:
    lines, hidden = follow_ups(n, len(n.alerts))
    shown = [f"  {icon} {a.name} {label_text(a)} {what}" for icon, a, what in lines]
    return shown + ([f"  {more_alerts(hidden, n.words)}"] if hidden else [])


def render(n: EnrichedNotification) -> str:
    """The whole message as plain text."""
    w = n.words
    head = f"{headline(n.kind, n.status, n.title, w)} ({w.severity.lower()} {n.severity})"
    lines = [RULE, head, RULE]
    if n.kind in ("repeat", "resolved"):
        return "\n".join([*lines, *_follow_up_lines(n), RULE]) + "\n"
    for alert in n.alerts:
        lines += _alert_lines(alert, w)
    if n.omitted_alerts:
        lines.append(f"  {more_alerts(n.omitted_alerts, w)}")
    if note := history_note(n):
        lines.append(note)
    if d := n.diagnosis:
        lines += ["", f"{w.diagnosis}: {d.diagnosis}", f"{w.impact}: {d.impact}"]
        lines.append(f"{w.action_items}:")
        lines += [f"  {i}. {item}" for i, item in enumerate(d.action_items, 1)]
        lines += [
            f"{w.rollback}: {d.rollback_plan}",
            f"{w.recovery_short}: {d.estimated_recovery_time}",
        ]
    lines += ["", f"{w.source_short}: {n.source.label_in(w)}"]
    if n.silence_url:
        lines.append(f"{w.silence}: {n.silence_url}")
    lines.append(RULE)
    return "\n".join(lines) + "\n"


class ConsoleNotifier:
    name = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    async def send(
        self,
        notification: EnrichedNotification,
        thread: Thread | None,
        progress: Progress | None = None,
    ) -> str | None:
        async def write() -> None:
            stream = self._stream or sys.stdout
            stream.write(render(notification))
            stream.flush()

        return await (progress or Progress()).step("print", write)

    async def edit(
        self,
        notification: EnrichedNotification,
        sent: Sent,
        progress: Progress | None = None,
    ) -> str | None:
        """A terminal cannot change what it printed: the message again, saying what it replaces."""

        async def write() -> None:
            stream = self._stream or sys.stdout
            stream.write(notification.words.replaces.format(title=notification.title) + "\n")
            stream.write(render(notification))
            stream.flush()

        return await (progress or Progress()).step("edit", write)
