"""Per-channel matchers: which notifications a channel gets (for example only severity=critical).

Syntax, as in Alertmanager: comma-separated `label=value`, `label!=value`, `label=~regex`,
`label!~regex`; values may be double-quoted; regexes match the whole value. A notification goes to the
channel when at least one of its alerts matches every matcher; no matchers means everything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.models import EnrichedNotification

_MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(".*"|[^"]*?)\s*$')


class RoutingError(ValueError):
    """A matcher setting that cannot be parsed."""


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.label, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = re.fullmatch(self.value, actual) is not None
        return found if self.op == "=~" else not found


def _split(text: str) -> list[str]:
    parts, current, quoted = [], "", False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p for p in parts if p.strip()]


def parse_matchers(text: str | None) -> tuple[Matcher, ...]:
    matchers = []
    for part in _split((text or "").strip().strip("{}")):
        found = _MATCHER.match(part)
        if not found:
            raise RoutingError(f"cannot parse matcher {part.strip()!r} (use label=value)")
        label, op, value = found.groups()
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = value[1:-1]
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise RoutingError(f"invalid regex in matcher {part.strip()!r}: {exc}") from exc
        matchers.append(Matcher(label, op, value))
    return tuple(matchers)


def routed(notification: EnrichedNotification, matchers: tuple[Matcher, ...]) -> bool:
    if not matchers:
        return True
    return any(all(m.matches(alert.labels) for m in matchers) for alert in notification.alerts)
