"""What Slack is sent: Block Kit messages built from an EnrichedNotification, within Slack's limits.

Every piece of alert or LLM text is escaped (`&`, `<`, `>`), so `<!channel>` and `<@U…>` stay inert.
Messages keep to Slack's limits by construction: at most 50 blocks, 3000 characters per section
(longer text continues in the next section, nothing is cut), 150 per header.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.formatting import SHORTENED_MARK, fired_for, number, shorten, timestamp
from app.language import Words
from app.models import AlertView, EnrichedNotification
from app.notifiers.layout import (
    follow_ups,
    headline,
    hidden_alerts,
    history_note,
    label_pairs,
    metric_stats,
    more_alerts,
    new_mark,
    resolved_note,
)
from app.silencing import offers

MAX_BLOCKS = 50
SECTION_CHARS = 3000
HEADER_CHARS = 150
MAX_ALERTS = 10
COLORS = {"critical": "#D32F2F", "error": "#D32F2F", "warning": "#F9A825", "info": "#1976D2"}
RESOLVED_COLOR = "#2E7D32"


def escape(text: str) -> str:
    """Slack's three control characters; after this, no text can form a mention or a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fit(text: str, limit: int) -> str:
    """`text` escaped, shortened (visibly) until the escaped form fits `limit`."""
    if len(escaped := escape(shorten(text, limit))) <= limit:
        return escaped
    # The longest cut whose escaped form fits, by bisection: one raw `<` or `&` escapes to four or
    # five characters, so shrinking by the overflow overshot (text full of them came out as the
    # mark alone).
    fits, too_long = 0, limit
    while too_long - fits > 1:
        size = (fits + too_long) // 2
        if len(escape(shorten(text, size))) <= limit:
            fits = size
        else:
            too_long = size
    return escape(shorten(text, fits))


def clip(mrkdwn: str, limit: int) -> str:
    """Escaped `mrkdwn` cut (visibly) to at most `limit` characters, backing off so that no entity
    (`&lt;`) and no link of ours (`<url|label>`) is cut in two."""
    if len(mrkdwn) <= limit:
        return mrkdwn
    kept = mrkdwn[: max(0, limit - len(SHORTENED_MARK))]
    for opener, closer in (("&", ";"), ("<", ">")):
        start = kept.rfind(opener)
        if start >= 0 and closer not in kept[start:]:
            kept = kept[:start]
    return kept.rstrip() + SHORTENED_MARK


def link(url: str, label: str) -> str:
    safe = escape(url).replace("|", "%7C")
    return f"<{safe}|{escape(label)}>"


def _chunks(text: str, limit: int) -> list[str]:
    """Escaped `text` in pieces of at most `limit` characters, preferring line and word breaks."""
    pieces: list[str] = []
    rest = text
    while rest:
        cut = len(rest)
        while len(escape(rest[:cut])) > limit:
            cut = max(1, cut * limit // len(escape(rest[:cut])) - 1)
        if cut < len(rest):
            space = max(rest.rfind("\n", 0, cut), rest.rfind(" ", 0, cut))
            cut = space + 1 if space > cut // 2 else cut
        pieces.append(escape(rest[:cut]))
        rest = rest[cut:]
    return pieces or [""]


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def sections(title: str, text: str) -> list[dict[str, Any]]:
    """`*title*` then the text, continued over as many sections as it needs."""
    prefix = f"*{title}*\n"
    pieces = _chunks(text, SECTION_CHARS - len(prefix))
    return [
        {"type": "section", "text": _mrkdwn((prefix if i == 0 else "") + piece)}
        for i, piece in enumerate(pieces)
    ]


def _labels(alert: AlertView) -> str:
    return " ".join(f"`{escape(k)}={escape(v)}`" for k, v in label_pairs(alert))


def _alert_block(alert: AlertView, words: Words) -> dict[str, Any]:
    lines = [f"*{escape(alert.name)}*{new_mark(alert, words)} {_labels(alert)}"]
    if alert.summary:
        lines.append(escape(shorten(alert.summary, 300)))
    if alert.description:
        lines.append(f"_{escape(shorten(alert.description, 800))}_")
    context = alert.context
    if context and context.unavailable:
        lines.append(f"{words.metrics_unavailable}: {escape(context.unavailable)}")
    elif context:
        lines.append(
            f"`{escape(shorten(context.expr, 200))}`  {words.now} *{number(context.current)}*"
            f" · {metric_stats(context, words)}  `{context.sparkline}`"
        )
    if context and context.graph_url:
        lines.append(link(context.graph_url, f"📈 {words.graph}"))
    text = "\n".join(lines)
    return {"type": "section", "text": _mrkdwn(clip(text, SECTION_CHARS))}


def _ended(lead: AlertView | None, resolution: EnrichedNotification) -> datetime:
    """When the original stopped firing: its lead alert's end in the resolving notification, else
    the latest end there, else when that notification was made."""
    ends = {a.fingerprint: a.ends_at for a in resolution.resolved if a.ends_at}
    if lead is not None and lead.fingerprint in ends:
        return ends[lead.fingerprint]
    return max(ends.values(), default=resolution.created_at)


def _fields(n: EnrichedNotification, resolution: EnrichedNotification | None) -> dict[str, Any]:
    """Severity, start, duration and counts; once `resolution` resolved the group, its counts and
    how long the group fired instead of a duration that would still be counting."""
    w = n.words
    first = n.firing[0] if n.firing else (n.resolved[0] if n.resolved else None)
    started = first.starts_at if first else None
    if resolution is None:
        duration = f"*{w.firing_for}*\n{fired_for(started, None)}"
    else:
        duration = f"*{w.fired_for}*\n{fired_for(started, _ended(first, resolution))}"
    counts = resolution or n
    alerts = w.counts.format(firing=len(counts.firing), resolved=len(counts.resolved))
    if counts.omitted_alerts:
        alerts += w.counts_more.format(count=counts.omitted_alerts)
    fields = [
        f"*{w.severity}*\n{fit(n.severity, 100)}",
        f"*{w.started}*\n{timestamp(started)}",
        duration,
        f"*{w.alerts}*\n{alerts}",
    ]
    return {"type": "section", "fields": [_mrkdwn(f) for f in fields]}


def _resolved_blocks(n: EnrichedNotification) -> list[dict[str, Any]]:
    """A full message's resolved alerts: one short line each (at most MAX_ALERTS of them)."""
    if not n.resolved:
        return []
    lines = [f"*✅ {n.words.resolved_list}*"]
    for alert in n.resolved[:MAX_ALERTS]:
        labels = " ".join(f"`{fit(f'{k}={v}', 100)}`" for k, v in label_pairs(alert))
        lines.append(f"✅ *{fit(alert.name, 100)}* {labels} {resolved_note(alert, n.words)}")
    return _follow_up_sections(lines)


def diagnosis_blocks(n: EnrichedNotification) -> list[dict[str, Any]]:
    d = n.diagnosis
    if d is None:
        return []
    w = n.words
    actions = "\n".join(f"{i}. {item}" for i, item in enumerate(d.action_items, 1))
    return [
        {"type": "divider"},
        *sections(f"🩺 {w.diagnosis}", d.diagnosis),
        *sections(f"💥 {w.impact}", d.impact),
        *sections(f"🛠 {w.action_items}", actions),
        *sections(f"↩️ {w.rollback}", d.rollback_plan),
        *sections(f"⏱ {w.recovery}", d.estimated_recovery_time),
    ]


def _links(n: EnrichedNotification) -> list[str]:
    w = n.words
    links = []
    graph = next((a.context.graph_url for a in n.firing if a.context and a.context.graph_url), None)
    if graph:
        links.append(link(graph, f"📈 {w.graph.capitalize()}"))
    if n.silence_url:
        links.append(link(n.silence_url, f"🔕 {w.silence}"))
    if n.runbook_url:
        links.append(link(n.runbook_url, f"📖 {w.runbook}"))
    return links


def render_blocks(
    n: EnrichedNotification, *, resolution: EnrichedNotification | None = None
) -> list[dict[str, Any]]:
    """The full message for `new` and `escalation`; with the `resolution` that resolved the whole
    group, the original as it is updated: ✅ RESOLVED, resolved counts, how long it fired."""
    w = n.words
    kind, status = ("resolved", "resolved") if resolution else (n.kind, n.status)
    head = headline(kind, status, n.title, w)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": fit(head, HEADER_CHARS)}},
        _fields(n, resolution),
    ]
    blocks += [_alert_block(a, w) for a in n.firing[:MAX_ALERTS]]
    blocks += _resolved_blocks(n)
    if hidden := hidden_alerts(n, MAX_ALERTS):
        blocks.append({"type": "context", "elements": [_mrkdwn(more_alerts(hidden, w))]})
    if note := history_note(n):
        blocks.append({"type": "context", "elements": [_mrkdwn(escape(note))]})
    blocks += diagnosis_blocks(n)
    footer = [_mrkdwn(f"{w.source}: {escape(n.source.label_in(w))}")]
    if links := _links(n):
        footer.append(_mrkdwn("  ·  ".join(links)))
    tail = {"type": "context", "elements": footer}
    return [*blocks[: MAX_BLOCKS - 1], tail]


def render_follow_up(n: EnrichedNotification) -> list[dict[str, Any]]:
    """The short reply for `repeat` and `resolved`."""
    lines = [f"*{escape(headline(n.kind, n.status, n.title, n.words))}*"]
    shown, hidden = follow_ups(n, MAX_ALERTS)
    lines += [f"{icon} {escape(a.name)} {_labels(a)} {what}" for icon, a, what in shown]
    if hidden:
        lines.append(more_alerts(hidden, n.words))
    return _follow_up_sections(lines)


def _follow_up_sections(lines: list[str]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    current = ""
    for full in lines:
        line = clip(full, SECTION_CHARS)
        if current and len(current) + 1 + len(line) > SECTION_CHARS:
            blocks.append({"type": "section", "text": _mrkdwn(current)})
            current = ""
        current = f"{current}\n{line}" if current else line
    blocks.append({"type": "section", "text": _mrkdwn(current)})
    return blocks[:MAX_BLOCKS]


def fallback_text(n: EnrichedNotification) -> str:
    """What push notifications and screen readers show."""
    return fit(f"{headline(n.kind, n.status, n.title, n.words)} ({n.severity})", 300)


def color(n: EnrichedNotification) -> str:
    if n.kind == "resolved" and n.status == "resolved":
        return RESOLVED_COLOR
    return COLORS.get(n.severity, "#757575")


def message(n: EnrichedNotification, *, buttons: bool = False) -> dict[str, Any]:
    """chat.postMessage / webhook arguments: blocks in one attachment, for the severity colour;
    with `buttons`, a firing page's silence buttons above its footer."""
    blocks = render_blocks(n) if n.kind in ("new", "escalation") else render_follow_up(n)
    if buttons and (actions := silence_buttons(n)):
        blocks = [*blocks[:-1][: MAX_BLOCKS - 2], actions, blocks[-1]]
    return {"text": fallback_text(n), "attachments": [{"color": color(n), "blocks": blocks}]}


def silence_buttons(n: EnrichedNotification) -> dict[str, Any] | None:
    """The page's silence buttons (app/silencing.py) as an actions block; None without any."""
    buttons = [
        {
            "type": "button",
            "action_id": f"silence-{offer.hours}h",
            "text": {"type": "plain_text", "text": offer.label},
            "value": offer.value,
        }
        for offer in offers(n)
    ]
    return {"type": "actions", "block_id": "silence", "elements": buttons} if buttons else None


def diagnosis_message(n: EnrichedNotification) -> dict[str, Any]:
    """Webhook arguments for the diagnosis of a message already posted, where a webhook cannot
    edit it: the headline, the diagnosis and its source."""
    head = f"🩺 {n.words.ai_diagnosis}: {n.title}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": fit(head, HEADER_CHARS)}},
        *diagnosis_blocks(n),
    ]
    source = {
        "type": "context",
        "elements": [_mrkdwn(f"{n.words.source}: {escape(n.source.label_in(n.words))}")],
    }
    return {
        "text": fit(head, 300),
        "attachments": [{"color": color(n), "blocks": [*blocks[: MAX_BLOCKS - 1], source]}],
    }
