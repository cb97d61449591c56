"""Taps on Telegram's silence buttons: one replica long-polls getUpdates, no public URL needed.

Telegram answers 409 Conflict to a second poller of the same bot, so the replicas share one role in
the store (`Store.hold_role`, ROLE): the holder polls, renewing its lease after every poll (each
shorter than the lease); the others try to take it every few seconds and do so once a dead holder's
lease ran out. A bot with a webhook set gets 409 too: then polling stops, once, with an error line
(buttons need getUpdates; `deleteWebhook` frees the bot).

A tap is obeyed only from a user in TELEGRAM_ALLOWED_USER_IDS and on a message in TELEGRAM_CHAT_ID;
anyone else gets a polite refusal and nothing is made. Then the silence is made or expired
(app/silencing.py), the tap is answered (the spinner on the button stops, with a short toast), and
the chat gets a reply to the message saying who silenced what until when, with an "Expire silence"
button under it.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import uuid
from typing import Protocol

from telegram import (
    Bot,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    ReplyParameters,
    Update,
)
from telegram.error import Conflict, RetryAfter, TelegramError

from app.notifiers.telegram_http import AiohttpRequest
from app.silencing import SilenceAsk, SilenceError, Silencer, describe, expire_value, parse, until

log = logging.getLogger(__name__)

ROLE = "telegram-poller"
LEASE_SECONDS = 30.0  # the service passes LEASE_SECONDS
POLL_SECONDS = 10  # getUpdates' long-poll timeout, at most a third of the lease
RETRY_SECONDS = 5.0  # a replica without the role tries again after this; a failed poll too
REFUSAL = "Sorry, you are not allowed to silence alerts from this chat."


class RoleStore(Protocol):
    async def hold_role(self, role: str, owner: str, seconds: float) -> bool: ...
    async def drop_role(self, role: str, owner: str) -> None: ...


class TelegramPoller:
    def __init__(
        self,
        token: str,
        base_url: str,
        store: RoleStore,
        silencer: Silencer,
        *,
        chat_id: str,
        allowed: frozenset[int],
        lease_seconds: float = LEASE_SECONDS,
        poll_seconds: int = POLL_SECONDS,
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        # A bot of its own: the long poll has a connection of its own, closed with the poller.
        self._requests = (AiohttpRequest(pool_size=2), AiohttpRequest(pool_size=1))
        self._bot = Bot(
            token,
            base_url=base_url,
            request=self._requests[0],
            get_updates_request=self._requests[1],
        )
        self._store = store
        self._silencer = silencer
        self._chat_id = chat_id
        self._allowed = allowed
        self._lease = lease_seconds
        self._poll = poll_seconds
        self._retry = retry_seconds
        self.owner = f"poller-{uuid.uuid4().hex[:8]}"
        self._task: asyncio.Task[None] | None = None
        self._offset: int | None = None
        self.polling = False  # whether this replica holds the role (for tests and /health)

    def start(self) -> None:
        log.info("telegram poller: started, taking the polling role when it is free")
        self._task = asyncio.create_task(self._run(), name="telegram-poller")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.polling:
            with contextlib.suppress(Exception):  # a store that is down: the lease runs out
                await self._store.drop_role(ROLE, self.owner)
        for request in self._requests:
            await request.shutdown()

    async def _run(self) -> None:
        while True:
            try:
                held = await self._store.hold_role(ROLE, self.owner, self._lease)
            except Exception as exc:
                log.warning("telegram poller: cannot reach the store for its role: %s", exc)
                held = False
            if held != self.polling:
                log.info("telegram poller: %s", "polling getUpdates" if held else "role lost")
            self.polling = held
            if not held:
                await asyncio.sleep(self._retry)
                continue
            try:
                await self.poll_once()
            except Conflict as exc:
                if "webhook" in exc.message.lower():
                    log.error(
                        "telegram poller: the bot has a webhook set, so getUpdates is refused and"
                        " silence buttons cannot work; delete the webhook (deleteWebhook) to use them"
                    )
                    await self._store.drop_role(ROLE, self.owner)
                    self.polling = False
                    return
                log.warning("telegram poller: another getUpdates poller of this bot: %s", exc)
                await asyncio.sleep(self._retry)
            except RetryAfter as exc:
                await asyncio.sleep(min(float(exc.retry_after), 60))  # type: ignore[arg-type]
            except TelegramError as exc:
                log.warning("telegram poller: getUpdates failed: %s", exc.message)
                await asyncio.sleep(self._retry)
            except Exception:  # a bug in handling one tap must not end the buttons for good
                log.exception("telegram poller: unexpected error; polling again")
                await asyncio.sleep(self._retry)

    async def poll_once(self) -> None:
        """One long poll; every tap in it handled, and confirmed with the next offset."""
        updates = await self._bot.get_updates(
            offset=self._offset, timeout=self._poll, allowed_updates=["callback_query"]
        )
        for update in updates:
            self._offset = update.update_id + 1
            await self.handle(update)

    async def handle(self, update: Update) -> None:
        query = update.callback_query
        if query is None or query.from_user is None:
            return
        user = query.from_user
        message = query.message
        in_chat = message is not None and str(message.chat.id) == self._chat_id
        if user.id not in self._allowed or not in_chat:
            log.warning("telegram: refused a tap by user %s (not allowed here)", user.id)
            await self._answer(query, REFUSAL, alert=True)
            return
        name = user.username or user.full_name or str(user.id)
        who = f"telegram:{name} ({user.id})"
        shown = html.escape(f"@{user.username}" if user.username else user.full_name)
        assert message is not None  # in_chat
        try:
            ask = parse(query.data)
            if isinstance(ask, SilenceAsk):
                where = f"Telegram message {self._chat_id}/{message.message_id}"
                silence = await self._silencer.silence(ask, who, where)
                what = html.escape(describe(silence.matchers))
                verb = "silenced" if silence.created else "asked again: already silenced"
                text = (
                    f"🔕 {shown} {verb} <code>{what}</code> for {ask.hours}h, until"
                    f" {until(silence.ends_at)} (silence <code>{silence.id}</code>)"
                )
                toast = f"Silenced for {ask.hours}h"
                markup = InlineKeyboardMarkup(
                    [
                        [
                            InlineKeyboardButton(
                                "🔔 Expire silence", callback_data=expire_value(silence.id)
                            )
                        ]
                    ]
                )
            else:
                await self._silencer.expire(ask)
                text = f"🔔 {shown} expired silence <code>{ask.silence_id}</code>"
                toast, markup = "Silence expired", None
        except SilenceError as exc:
            log.warning("telegram: tap by %s not done: %s", who, exc)
            await self._answer(query, f"Not done: {exc}"[:200], alert=True)
            return
        await self._answer(query, toast)
        try:
            await self._bot.send_message(
                chat_id=self._chat_id,
                text=text,
                parse_mode="HTML",
                reply_markup=markup,
                reply_parameters=ReplyParameters(
                    message.message_id, allow_sending_without_reply=True
                ),
            )
        except TelegramError as exc:
            log.warning("telegram: could not say in the chat what a tap did: %s", exc.message)

    async def _answer(self, query: CallbackQuery, text: str, *, alert: bool = False) -> None:
        try:
            await self._bot.answer_callback_query(query.id, text=text, show_alert=alert)
        except TelegramError as exc:  # a tap older than Telegram keeps (about a minute)
            log.info("telegram: could not answer a tap: %s", exc.message)
