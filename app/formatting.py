"""Text shaping every renderer shares: shortening with a visible mark, durations, numbers, times."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

SHORTENED_MARK = "… [shortened]"
# C0/C1 controls (except tab and newline) and bidi overrides that could disguise text in a chat.
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f]")


def clean(text: str) -> str:
    """Drop control characters and bidi overrides from untrusted text (escaping is per channel)."""
    return _UNSAFE.sub("", text)


def shorten(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, ending with a visible mark when cut."""
    if len(text) <= limit:
        return text
    keep = max(0, limit - len(SHORTENED_MARK))
    return text[:keep].rstrip() + SHORTENED_MARK


def join_names(
    names: list[str], limit: int = 5, and_: str = "and", and_more: str = "and {count} more"
) -> str:
    """`a`, `a and b`, `a, b and c`; past `limit` names, `a, b, c, d, e and 2 more` (in the words
    given: `and_`, and `and_more` with its `{count}`)."""
    if len(names) > limit:
        return f"{', '.join(names[:limit])} {and_more.format(count=len(names) - limit)}"
    if len(names) < 2:
        return "".join(names)
    return f"{', '.join(names[:-1])} {and_} {names[-1]}"


def duration(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")]
    shown = [f"{n}{unit}" for n, unit in parts if n][:2]
    return " ".join(shown) or "0s"


def fired_for(
    starts_at: datetime | None, ends_at: datetime | None, now: datetime | None = None
) -> str:
    if starts_at is None:
        return "unknown"
    end = ends_at or now or datetime.now(UTC)
    return duration(end - starts_at)


def number(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    if value == int(value) and abs(value) < 1e9:
        return str(int(value))
    return f"{value:.4g}"


def signed(value: float | None) -> str:
    text = number(value)
    return f"+{text}" if value is not None and value > 0 else text


def timestamp(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "unknown"
