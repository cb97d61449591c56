"""What every channel's message shows, before any channel's escaping or markup.

The console, Slack and Telegram renderers take their words from here, so a message reads the same
everywhere and a count (how many alerts a reply leaves out) is computed once.
"""

from __future__ import annotations

from app.formatting import fired_for, number, shorten, signed
from app.language import Words
from app.models import AlertView, EnrichedNotification, MetricContext

MAX_LABELS = 8


def headline(kind: str, status: str, title: str, words: Words) -> str:
    """`🔥 FIRING: APIDown on binance`; the same words in every channel."""
    if kind == "resolved":
        icon, word = ("✅", words.resolved if status == "resolved" else words.partly_resolved)
    else:
        icon, word = {
            "escalation": ("🔥", words.more_firing),
            "repeat": ("🔁", words.still_firing),
        }.get(kind, ("🔥", words.firing))
    return f"{icon} {word}: {title}"


def history_note(n: EnrichedNotification) -> str | None:
    """`🕘 3rd time in 7 days; usually resolves in ~9 min`, the same words in every channel."""
    return f"🕘 {n.history}" if n.history else None


def label_pairs(alert: AlertView) -> list[tuple[str, str]]:
    """The identifying labels as a chat shows them: at most 8, long keys and values shortened."""
    pairs = list(alert.identifying_labels.items())[:MAX_LABELS]
    return [(shorten(k, 60), shorten(v, 120)) for k, v in pairs]


def label_text(alert: AlertView) -> str:
    return " ".join(f"{k}={v}" for k, v in label_pairs(alert))


def new_mark(alert: AlertView, words: Words) -> str:
    """` 🆕 new` after the name of an alert that joined an already firing group, else nothing."""
    return f" 🆕 {words.new}" if alert.new else ""


def resolved_note(alert: AlertView, words: Words) -> str:
    return words.resolved_after.format(duration=fired_for(alert.starts_at, alert.ends_at))


def hidden_alerts(n: EnrichedNotification, limit: int) -> int:
    """How many of the notification's alerts a full message leaves out when it shows at most
    `limit` firing and `limit` resolved ones."""
    return max(0, len(n.firing) - limit) + max(0, len(n.resolved) - limit) + n.omitted_alerts


def follow_ups(n: EnrichedNotification, limit: int) -> tuple[list[tuple[str, AlertView, str]], int]:
    """The short reply's lines, (icon, alert, what happened), resolved first; and how many of the
    notification's alerts it leaves out."""
    words = n.words
    lines = [("✅", a, resolved_note(a, words)) for a in n.resolved[:limit]]
    lines += [
        ("🔥", a, words.still_firing_for.format(duration=fired_for(a.starts_at, None)))
        for a in n.firing[:limit]
    ]
    return lines, len(n.alerts) - len(lines) + n.omitted_alerts


def metric_stats(context: MetricContext, words: Words) -> str:
    """`min 0 · max 1 · mean 0.5 · Δ -1 over 30m`: the window's figures after the current value."""
    return (
        f"min {number(context.minimum)} · max {number(context.maximum)}"
        f" · {words.mean} {number(context.mean)} · Δ {signed(context.change)}"
        f" {words.over.format(window=f'{context.window_minutes}m')}"
    )


def more_alerts(count: int, words: Words) -> str:
    return words.more_alerts.format(count=count)
