"""Telegram: HTML messages through python-telegram-bot, replies for follow-ups.

A message is built from lines, each one balanced HTML on its own (a tag never spans a line), with
every piece of alert or LLM text `html.escape`d. Lines are packed into messages of at most 4096
characters (measured on the HTML itself, in UTF-16 units, so the limit after entity parsing holds a
fortiori). Long annotations are shortened with a visible mark; a line too long for one message (the
diagnosis can be) is split into balanced pieces, never cut. Parts after the first reply to the first.

An edit re-renders the message and edits its parts in place; parts it no longer needs say so, parts
it needs beyond the old ones are sent as replies to the first. Every call is retried as
telegram_calls.py says.
"""

from __future__ import annotations

import asyncio
import functools
import html
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    ReplyParameters,
)
from telegram.error import BadRequest, InvalidToken, TelegramError

from app.charts import ChartData
from app.formatting import fired_for, number, shorten, timestamp
from app.language import Words
from app.models import AlertView, EnrichedNotification
from app.notifiers.base import NotifyError, Progress, Sent, Thread
from app.notifiers.chart_steps import send_charts
from app.notifiers.layout import (
    follow_ups,
    headline,
    hidden_alerts,
    history_note,
    label_text,
    metric_stats,
    more_alerts,
    new_mark,
    resolved_note,
)
from app.notifiers.telegram_calls import Call, call_with_retries
from app.silencing import offers

LIMIT = 4096
MAX_ALERTS = 10


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


def _alert_lines(alert: AlertView, words: Words) -> list[Line]:
    name = f"• {shorten(alert.name, 100)}{new_mark(alert, words)}"
    lines = [Line(label=name, text=label_text(alert), tag="code")]
    started = f"{timestamp(alert.starts_at)} ({fired_for(alert.starts_at, None)})"
    lines.append(Line(f"{words.since} {started}"))
    if alert.summary:
        lines.append(Line(shorten(alert.summary, 300)))
    if alert.description:
        lines.append(Line(shorten(alert.description, 1000), tag="i"))
    context = alert.context
    if context and context.unavailable:
        lines.append(Line(f"{words.metrics_unavailable}: {context.unavailable}"))
    elif context:
        lines.append(Line(shorten(context.expr, 200), tag="code"))
        stats = metric_stats(context, words)
        lines.append(Line(f"{words.now} {number(context.current)} · {stats}"))
        if context.sparkline:
            lines.append(Line(context.sparkline, tag="code"))
    if context and context.graph_url:
        lines.append(Line(f"📈 {words.graph}", href=context.graph_url))
    return lines


def render(n: EnrichedNotification) -> list[Line]:
    w = n.words
    lines = [Line(label=headline(n.kind, n.status, n.title, w))]
    if n.kind in ("repeat", "resolved"):
        shown, hidden = follow_ups(n, MAX_ALERTS)
        lines += [Line(f"{icon} {a.name} {label_text(a)} {what}") for icon, a, what in shown]
    else:
        lines.append(Line(label=f"{w.severity}:", text=n.severity))
        for alert in n.firing[:MAX_ALERTS]:
            lines += [Line(), *_alert_lines(alert, w)]
        if n.resolved:
            lines += [Line(), Line(label=f"✅ {w.resolved_list}:")]
        lines += [
            Line(f"• {shorten(a.name, 100)} {label_text(a)} {resolved_note(a, w)}")
            for a in n.resolved[:MAX_ALERTS]
        ]
        hidden = hidden_alerts(n, MAX_ALERTS)
    if hidden:
        lines.append(Line(more_alerts(hidden, w), tag="i"))
    if note := history_note(n):
        lines.append(Line(note, tag="i"))
    if d := n.diagnosis:
        lines += [
            Line(),
            Line(label=f"🩺 {w.diagnosis}:", text=d.diagnosis),
            Line(label=f"💥 {w.impact}:", text=d.impact),
            Line(label=f"🛠 {w.action_items}:"),
            *[Line(f"{i}. {item}") for i, item in enumerate(d.action_items, 1)],
            Line(label=f"↩️ {w.rollback_short}:", text=d.rollback_plan),
            Line(label=f"⏱ {w.recovery_short}:", text=d.estimated_recovery_time),
        ]
    if n.kind in ("new", "escalation"):
        lines += [Line(), Line(f"{w.source}: {n.source.label_in(w)}", tag="i")]
        if n.silence_url:
            lines.append(Line(f"🔕 {w.silence_in_alertmanager}", href=n.silence_url))
        if n.runbook_url:
            lines.append(Line(f"📖 {w.runbook}", href=n.runbook_url))
    return lines


def part_ids(sent: Sent) -> list[int]:
    """The message ids of the parts `sent` was made of, in order; part 1 falls back to the ref."""
    ids: list[int] = []
    for index in range(1, len(sent.steps) + 2):
        ref = sent.steps.get(f"part-{index}") or (sent.ref if index == 1 else None)
        if ref is None or not ref.isdigit():
            break
        ids.append(int(ref))
    return ids


def silence_keyboard(n: EnrichedNotification) -> InlineKeyboardMarkup | None:
    """The page's silence buttons (app/silencing.py) as an inline keyboard; taps arrive through
    getUpdates (app/telegram_poller.py)."""
    row = [InlineKeyboardButton(offer.label, callback_data=offer.value) for offer in offers(n)]
    return InlineKeyboardMarkup([row]) if row else None


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
        charts: bool = False,
        buttons: bool = False,
    ) -> None:
        self._bot = bot
        self._chat_id = chat_id
        self._thread_id = thread_id
        self._charts = charts
        self._buttons = buttons
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
        keyboard = silence_keyboard(notification) if self._buttons else None
        first: str | None = None
        for index, part in enumerate(parts, 1):
            target = int(first) if first else reply_to
            markup = keyboard if index == 1 else None
            ref = await progress.step(
                f"part-{index}", functools.partial(self._send_part, part, target, markup)
            )
            first = first or ref
        return first

    async def attach(
        self,
        notification: EnrichedNotification,
        ref: str | None,
        thread: Thread | None,
        progress: Progress | None = None,
    ) -> None:
        """After the message went out (and was recorded): its charts, as photos replying to it."""
        if self._charts and ref and ref.isdigit():
            photo = functools.partial(self._send_photo, reply_to=int(ref))
            await send_charts(self.name, notification, progress or Progress(), photo)

    async def _send_photo(self, png: bytes, chart: ChartData, *, reply_to: int) -> str:
        """sendPhoto, a multipart upload, captioned in plain text (no markup to escape)."""
        message = await self._bot.send_photo(
            chat_id=self._chat_id,
            photo=png,
            filename="chart.png",
            caption=f"📈 {chart.title}",
            message_thread_id=self._thread_id,
            reply_parameters=ReplyParameters(reply_to, allow_sending_without_reply=True),
        )
        return str(message.message_id)

    async def edit(
        self,
        notification: EnrichedNotification,
        sent: Sent,
        progress: Progress | None = None,
        *,
        reply_markup: InlineKeyboardMarkup | None = None,
    ) -> str | None:
        """The re-rendered parts in place of the old ones: part 1 is step "edit", part k
        "edit-part-k"; old parts left over are marked as continued above, new parts beyond the
        old ones are sent as replies to part 1 ("edit-extra-1"...). `reply_markup` goes on
        part 1. An unchanged part counts as edited; a deleted message is a permanent error."""
        progress = progress or Progress()
        if reply_markup is None and self._buttons:  # an edit without it would drop the buttons
            reply_markup = silence_keyboard(notification)
        old = part_ids(sent)
        if not old:
            raise NotifyError("telegram", f"no message to edit (ref {sent.ref!r})", retryable=False)
        parts = pack(render(notification))
        for index, message_id in enumerate(old, 1):
            continued = f"<i>({html.escape(notification.words.continued)})</i>"
            text = parts[index - 1] if index <= len(parts) else continued
            edit = self._editor(message_id, reply_markup if index == 1 else None)
            name = "edit" if index == 1 else f"edit-part-{index}"
            await progress.step(name, functools.partial(self._call, edit, text))
        for extra, part in enumerate(parts[len(old) :], 1):
            await progress.step(
                f"edit-extra-{extra}", functools.partial(self._send_part, part, old[0])
            )
        return str(old[0])

    async def _call(self, call: Call, text: str) -> str:
        return await call_with_retries(call, text, attempts=self._max_attempts, sleep=self._sleep)

    async def _send_part(
        self, text: str, reply_to: int | None, reply_markup: InlineKeyboardMarkup | None = None
    ) -> str:
        async def send(parse_mode: str | None, text: str) -> str:
            message = await self._bot.send_message(
                chat_id=self._chat_id,
                text=text,
                parse_mode=parse_mode,
                reply_markup=reply_markup,
                message_thread_id=self._thread_id,
                reply_parameters=ReplyParameters(reply_to, allow_sending_without_reply=True)
                if reply_to
                else None,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
            )
            return str(message.message_id)

        return await self._call(send, text)

    def _editor(self, message_id: int, reply_markup: InlineKeyboardMarkup | None) -> Call:
        async def edit(parse_mode: str | None, text: str) -> str:
            try:
                await self._bot.edit_message_text(
                    text=text,
                    chat_id=self._chat_id,
                    message_id=message_id,
                    parse_mode=parse_mode,
                    reply_markup=reply_markup,
                    link_preview_options=LinkPreviewOptions(is_disabled=True),
                )
            except BadRequest as exc:
                # Already showing this text: an earlier attempt's edit went out, or it never changed.
                if "message is not modified" not in exc.message.lower():
                    raise
            return str(message_id)

        return edit

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
