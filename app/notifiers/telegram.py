"""Telegram: HTML messages through python-telegram-bot, replies for follow-ups.

A message is built from lines, each one balanced HTML on its own (a tag never spans a line), with
every piece of alert or LLM text `html.escape`d. Lines are packed into messages of at most 4096
characters (measured on the HTML itself, in UTF-16 units, so the limit after entity parsing holds a
fortiori). Long annotations are shortened with a visible mark; a line too long for one message (the
diagnosis can be) is split into balanced pieces, never cut. Parts after the first reply to the first.

RetryAfter (an int or a timedelta) is honoured, timeouts and network errors are retried with backoff;
"can't parse entities" resends the same text without HTML, so the message still arrives.
"""

from __future__ import annotations

import asyncio
import functools
import html
import logging
import re
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from telegram import Bot, LinkPreviewOptions, ReplyParameters
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.warnings import PTBDeprecationWarning

from app.formatting import fired_for, number, shorten, timestamp
from app.models import AlertView, EnrichedNotification
from app.notifiers.base import NotifyError, Progress, Thread
from app.notifiers.layout import (
    follow_ups,
    headline,
    hidden_alerts,
    label_text,
    metric_stats,
    new_mark,
    resolved_note,
)

log = logging.getLogger(__name__)
# PTB 22.2+ warns from inside RetryAfter on every 429 that retry_after will become a timedelta;
# retry_after_seconds() accepts both, so that one warning is noise here.
RETRY_AFTER_WARNING = r".*retry_after.*timedelta"
warnings.filterwarnings("ignore", RETRY_AFTER_WARNING, PTBDeprecationWarning)

LIMIT = 4096
MAX_ALERTS = 10
MAX_RETRY_AFTER = 60.0


@dataclass(frozen=True)
class Line:
    """`<b>label</b> <tag>text</tag>`: label is ours, text is untrusted and escaped here."""

    text: str = ""
    label: str = ""
    tag: str | None = None
    href: str | None = None

    def html(self, text: str | None = None, with_label: bool = True) -> str:
        body = html.escape(self.text if text is None else text, quote=False)
        if self.href:
            body = f'<a href="{html.escape(self.href, quote=True)}">{body}</a>'
        elif self.tag:
            body = f"<{self.tag}>{body}</{self.tag}>"
        if self.label and with_label:
            return f"<b>{html.escape(self.label)}</b> {body}".rstrip()
        return body


def units(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def _pieces(line: Line, limit: int) -> list[str]:
    """The line as HTML pieces of at most `limit` units each, split at spaces where possible."""
    if units(line.html()) <= limit:
        return [line.html()]
    pieces, rest, first = [], line.text, True
    while rest:
        cut = len(rest)
        while units(line.html(rest[:cut], first)) > limit:
            cut = max(1, cut * 9 // 10)
        if cut < len(rest):
            space = rest.rfind(" ", 0, cut)
            cut = space + 1 if space > cut // 2 else cut
        pieces.append(line.html(rest[:cut], first))
        rest, first = rest[cut:], False
    return pieces


def pack(lines: list[Line], limit: int = LIMIT) -> list[str]:
    """Join lines into as few messages as fit `limit`; every message is balanced HTML."""
    parts: list[str] = []
    current = ""
    for line in lines:
        for piece in _pieces(line, limit):
            joined = f"{current}\n{piece}" if current else piece
            if units(joined) <= limit:
                current = joined
            else:
                parts.append(current)
                current = piece
    if current or not parts:
        parts.append(current)
    return parts


def _alert_lines(alert: AlertView) -> list[Line]:
    name = f"• {shorten(alert.name, 100)}{new_mark(alert)}"
    lines = [Line(label=name, text=label_text(alert), tag="code")]
    lines.append(Line(f"since {timestamp(alert.starts_at)} ({fired_for(alert.starts_at, None)})"))
    if alert.summary:
        lines.append(Line(shorten(alert.summary, 300)))
    if alert.description:
        lines.append(Line(shorten(alert.description, 1000), tag="i"))
    context = alert.context
    if context and context.unavailable:
        lines.append(Line(f"metrics unavailable: {context.unavailable}"))
    elif context:
        lines.append(Line(shorten(context.expr, 200), tag="code"))
        lines.append(Line(f"now {number(context.current)} · {metric_stats(context)}"))
        if context.sparkline:
            lines.append(Line(context.sparkline, tag="code"))
    if context and context.graph_url:
        lines.append(Line("📈 graph", href=context.graph_url))
    return lines


def render(n: EnrichedNotification) -> list[Line]:
    lines = [Line(label=headline(n.kind, n.status, n.title))]
    if n.kind in ("repeat", "resolved"):
        shown, hidden = follow_ups(n, MAX_ALERTS)
        lines += [Line(f"{icon} {a.name} {label_text(a)} {what}") for icon, a, what in shown]
    else:
        lines.append(Line(label="Severity:", text=n.severity))
        for alert in n.firing[:MAX_ALERTS]:
            lines += [Line(), *_alert_lines(alert)]
        if n.resolved:
            lines += [Line(), Line(label="✅ Resolved:")]
        lines += [
            Line(f"• {shorten(a.name, 100)} {label_text(a)} {resolved_note(a)}")
            for a in n.resolved[:MAX_ALERTS]
        ]
        hidden = hidden_alerts(n, MAX_ALERTS)
    if hidden:
        lines.append(Line(f"… and {hidden} more alerts", tag="i"))
    if d := n.diagnosis:
        lines += [
            Line(),
            Line(label="🩺 Diagnosis:", text=d.diagnosis),
            Line(label="💥 Impact:", text=d.impact),
            Line(label="🛠 Action items:"),
            *[Line(f"{i}. {item}") for i, item in enumerate(d.action_items, 1)],
            Line(label="↩️ Rollback:", text=d.rollback_plan),
            Line(label="⏱ Recovery:", text=d.estimated_recovery_time),
        ]
    if n.kind in ("new", "escalation"):
        lines += [Line(), Line(f"Diagnosis source: {n.source.label}", tag="i")]
        if n.silence_url:
            lines.append(Line("🔕 Silence in Alertmanager", href=n.silence_url))
        if n.runbook_url:
            lines.append(Line("📖 Runbook", href=n.runbook_url))
    return lines


def _seconds(retry_after: int | float | timedelta) -> float:
    if isinstance(retry_after, timedelta):
        return retry_after.total_seconds()
    return float(retry_after)


def retry_after_seconds(exc: RetryAfter) -> float:
    """PTB 22 returns an int and warns that it will become a timedelta; accept either."""
    return _seconds(exc.retry_after)


def plain(text_html: str) -> str:
    """The text of one of our HTML parts, without tags (for the can't-parse fallback)."""
    return html.unescape(re.sub(r"<[^>]+>", "", text_html))


class TelegramNotifier:
    name = "telegram"

    def __init__(
        self,
        bot: Bot,
        chat_id: str,
        thread_id: int | None = None,
        *,
        max_attempts: int = 4,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._bot = bot
        self._chat_id = chat_id
        self._thread_id = thread_id
        self._max_attempts = max_attempts
        self._sleep = sleep

    async def send(
        self,
        notification: EnrichedNotification,
        thread: Thread | None,
        progress: Progress | None = None,
    ) -> str | None:
        """Every part is a step of its own: a retry sends only the parts that did not go out."""
        progress = progress or Progress()
        parts = pack(render(notification))
        reply_to = int(thread.ref) if thread and thread.ref.isdigit() else None
        first: str | None = None
        for index, part in enumerate(parts, 1):
            target = int(first) if first else reply_to
            ref = await progress.step(
                f"part-{index}", functools.partial(self._send_part, part, target)
            )
            first = first or ref
        return first

    async def _send_part(self, text: str, reply_to: int | None) -> str:
        parse_mode: str | None = ParseMode.HTML
        for attempt in range(1, self._max_attempts + 1):
            try:
                message = await self._bot.send_message(
                    chat_id=self._chat_id,
                    text=text,
                    parse_mode=parse_mode,
                    message_thread_id=self._thread_id,
                    reply_parameters=ReplyParameters(reply_to, allow_sending_without_reply=True)
                    if reply_to
                    else None,
                    link_preview_options=LinkPreviewOptions(is_disabled=True),
                )
                return str(message.message_id)
            except RetryAfter as exc:
                wait = retry_after_seconds(exc)
                if attempt == self._max_attempts or wait > MAX_RETRY_AFTER:
                    raise NotifyError(
                        "telegram", f"rate limited, retry after {wait:g}s", retryable=True
                    ) from exc
                await self._sleep(wait)
            except BadRequest as exc:
                if "can't parse entities" in exc.message.lower() and parse_mode is not None:
                    log.warning(
                        "telegram rejected the HTML (%s); sending as plain text", exc.message
                    )
                    parse_mode, text = None, plain(text)
                    continue
                raise NotifyError(
                    "telegram", f"bad request: {exc.message}", retryable=False
                ) from exc
            except Forbidden as exc:
                raise NotifyError(
                    "telegram",
                    f"forbidden: {exc.message} (is the bot in the chat?)",
                    retryable=False,
                ) from exc
            except InvalidToken as exc:
                raise NotifyError("telegram", "invalid bot token", retryable=False) from exc
            except NetworkError as exc:  # includes TimedOut
                if attempt == self._max_attempts:
                    raise NotifyError(
                        "telegram", f"network error: {exc.message}", retryable=True
                    ) from exc
                await self._sleep(min(8.0, 0.5 * 2**attempt))
            except TelegramError as exc:
                raise NotifyError("telegram", f"error: {exc.message}", retryable=True) from exc
        raise NotifyError("telegram", "gave up", retryable=True)

    async def ping(self) -> str:
        try:
            me = await self._bot.get_me()
        except InvalidToken as exc:
            raise NotifyError("telegram", "invalid bot token", retryable=False) from exc
        except TelegramError as exc:
            raise NotifyError("telegram", exc.message, retryable=True) from exc
        return f"bot @{me.username}, chat {self._chat_id}"

    async def close(self) -> None:
        await self._bot.shutdown()
        # Bot.shutdown skips its requests when Bot.initialize (a getMe) never ran, as here.
        await self._bot.request.shutdown()
