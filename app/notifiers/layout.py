"""What every channel's message shows, before any channel's escaping or markup.

The console, Slack and Telegram renderers take their words from here, so a message reads the same
everywhere and a count (how many alerts a reply leaves out) is computed once.
"""

from __future__ import annotations

from app.formatting import fired_for, number, shorten, signed
from app.models import AlertView, EnrichedNotification, MetricContext

MAX_LABELS = 8
NEW_MARK = "🆕 new"
HEADLINES = {
    "new": ("🔥", "FIRING"),
    "escalation": ("🔥", "MORE FIRING"),
    "repeat": ("🔁", "STILL FIRING"),
}


def headline(kind: str, status: str, title: str) -> str:
    """`🔥 FIRING: APIDown on binance`; the same words in every channel."""
    if kind == "resolved":
        icon, word = ("✅", "RESOLVED") if status == "resolved" else ("✅", "PARTLY RESOLVED")
    else:
        icon, word = HEADLINES.get(kind, ("🔥", "FIRING"))
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


def new_mark(alert: AlertView) -> str:
    """` 🆕 new` after the name of an alert that joined an already firing group, else nothing."""
    return f" {NEW_MARK}" if alert.new else ""


def resolved_note(alert: AlertView) -> str:
    return f"resolved, fired for {fired_for(alert.starts_at, alert.ends_at)}"


def hidden_alerts(n: EnrichedNotification, limit: int) -> int:
    """How many of the notification's alerts a full message leaves out when it shows at most
    `limit` firing and `limit` resolved ones."""
    return max(0, len(n.firing) - limit) + max(0, len(n.resolved) - limit) + n.omitted_alerts


def follow_ups(n: EnrichedNotification, limit: int) -> tuple[list[tuple[str, AlertView, str]], int]:
    """The short reply's lines, (icon, alert, what happened), resolved first; and how many of the
    notification's alerts it leaves out."""
    lines = [("✅", a, resolved_note(a)) for a in n.resolved[:limit]]
    lines += [
        ("🔥", a, f"still firing, for {fired_for(a.starts_at, None)}") for a in n.firing[:limit]
    ]
    return lines, len(n.alerts) - len(lines) + n.omitted_alerts


def metric_stats(context: MetricContext) -> str:
    """`min 0 · max 1 · mean 0.5 · Δ -1 over 30m`: the window's figures after the current value."""
    return (
        f"min {number(context.minimum)} · max {number(context.maximum)}"
        f" · mean {number(context.mean)} · Δ {signed(context.change)}"
        f" over {context.window_minutes}m"
    )
