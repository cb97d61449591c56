"""Console notifier: what `make run` prints when no chat channel is configured."""

from __future__ import annotations

import sys
from typing import TextIO

from app.formatting import fired_for, number, shorten, signed, timestamp
from app.models import AlertView, EnrichedNotification, MetricContext
from app.notifiers.base import Progress, Sent, Thread
from app.notifiers.layout import follow_ups, headline, history_note, label_text, new_mark

RULE = "─" * 72


def _context_lines(context: MetricContext | None) -> list[str]:
    if context is None:
        return []
    if context.unavailable:
        return [f"    metrics unavailable: {context.unavailable}"]
    return [
        f"    metric   {context.expr}",
        f"    now {number(context.current)}   min {number(context.minimum)}"
        f"   max {number(context.maximum)}   mean {number(context.mean)}"
        f"   change {signed(context.change)} over {context.window_minutes}m",
        f"    trend    {context.sparkline}",
    ]


def _alert_lines(alert: AlertView) -> list[str]:
    lines = [f"  • [{alert.status}] {alert.name}{new_mark(alert)} {label_text(alert)}".rstrip()]
    if alert.status == "resolved":
        lines.append(f"    resolved after {fired_for(alert.starts_at, alert.ends_at)}")
    else:
        lines.append(f"    since {timestamp(alert.starts_at)} ({fired_for(alert.starts_at, None)})")
    if alert.summary:
        lines.append(f"    summary: {shorten(alert.summary, 300)}")
    if alert.description:
        lines.append(f"    description: {shorten(alert.description, 600)}")
    lines += _context_lines(alert.context)
    if alert.context and alert.context.graph_url:
        lines.append(f"    graph: {alert.context.graph_url}")
    return lines


def _follow_up_lines(n: EnrichedNotification) -> list[str]:
    lines, hidden = follow_ups(n, len(n.alerts))
    shown = [f"  {icon} {a.name} {label_text(a)} {what}" for icon, a, what in lines]
    return shown + ([f"  … and {hidden} more alerts not shown"] if hidden else [])


def render(n: EnrichedNotification) -> str:
    """The whole message as plain text."""
    head = f"{headline(n.kind, n.status, n.title)} (severity {n.severity})"
    lines = [RULE, head, RULE]
    if n.kind in ("repeat", "resolved"):
        return "\n".join([*lines, *_follow_up_lines(n), RULE]) + "\n"
    for alert in n.alerts:
        lines += _alert_lines(alert)
    if n.omitted_alerts:
        lines.append(f"  … and {n.omitted_alerts} more alerts not shown")
    if note := history_note(n):
        lines.append(note)
    if d := n.diagnosis:
        lines += ["", f"Diagnosis: {d.diagnosis}", f"Impact: {d.impact}", "Action items:"]
        lines += [f"  {i}. {item}" for i, item in enumerate(d.action_items, 1)]
        lines += [f"Rollback plan: {d.rollback_plan}", f"Recovery: {d.estimated_recovery_time}"]
    lines += ["", f"Source: {n.source.label}"]
    if n.silence_url:
        lines.append(f"Silence: {n.silence_url}")
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
            stream.write(f"↻ replaces the earlier message for {notification.title}\n")
            stream.write(render(notification))
            stream.flush()

        return await (progress or Progress()).step("edit", write)
