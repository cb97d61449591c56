"""What a verified click on a Slack silence button does: the silence is made or expired in
Alertmanager (app/silencing.py), and what happened is replied in the message's thread, with an
"Expire silence" button under a new silence. The HTTP side is app/slack_actions.py.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.alertmanager import Silence
from app.notifiers.base import NotifyError
from app.notifiers.slack_blocks import escape
from app.silencing import (
    SilenceAsk,
    SilenceError,
    Silencer,
    describe,
    expire_value,
    parse,
    until,
)

if TYPE_CHECKING:  # the webhook's process loads slack-sdk only with Slack's buttons on
    from app.notifiers.slack import SlackBotNotifier

log = logging.getLogger(__name__)

_SLACK_ID = re.compile(r"[A-Z0-9]{1,32}")
_TS = re.compile(r"[0-9]{1,12}\.[0-9]{1,8}")


@dataclass(frozen=True)
class Click:
    """The parts of a block_actions payload this service acts on, checked."""

    user_id: str
    user_name: str
    channel: str
    thread_ts: str  # the thread to reply in: the message's own, or the one it is in
    value: str


def click_of(payload: Any) -> Click | None:
    """The click in a block_actions payload, or None for anything else (a shape not ours)."""
    try:
        if payload["type"] != "block_actions":
            return None
        user, action = payload["user"], payload["actions"][0]
        container = payload.get("container") or {}
        message = payload.get("message") or {}
        channel = (payload.get("channel") or {}).get("id") or container.get("channel_id")
        ts = message.get("thread_ts") or message.get("ts") or container.get("message_ts")
        click = Click(
            user_id=str(user["id"]),
            user_name=str(user.get("username") or user.get("name") or user["id"]),
            channel=str(channel),
            thread_ts=str(ts),
            value=str(action["value"]),
        )
    except (KeyError, IndexError, TypeError, AttributeError):
        return None
    ids_ok = _SLACK_ID.fullmatch(click.user_id) and _SLACK_ID.fullmatch(click.channel)
    return click if ids_ok and _TS.fullmatch(click.thread_ts) else None


class SlackActions:
    """Does what a verified click asks and replies in the thread."""

    def __init__(self, signing_secret: str, silencer: Silencer, slack: SlackBotNotifier) -> None:
        self.signing_secret = signing_secret
        self._silencer = silencer
        self._slack = slack

    async def handle(self, click: Click) -> None:
        mention = f"<@{click.user_id}>"  # checked: letters and digits only
        who = f"slack:{click.user_name} ({click.user_id})"
        blocks: list[dict[str, Any]] = []
        try:
            ask = parse(click.value)
            if isinstance(ask, SilenceAsk):
                where = f"Slack message {click.channel}/{click.thread_ts}"
                silence = await self._silencer.silence(ask, who, where)
                text = silenced(mention, ask.hours, silence)
                blocks = [_section(text), expire_button(silence.id)]
            else:
                await self._silencer.expire(ask)
                text = f"🔔 {mention} expired silence `{ask.silence_id}`"
        except SilenceError as exc:
            log.warning("slack: click by %s not done: %s", who, exc)
            text = f"⚠️ {mention}: not done: {escape(str(exc))}"
        try:
            await self._slack.post_in_thread(
                click.channel, click.thread_ts, text, blocks or [_section(text)]
            )
        except NotifyError as exc:
            log.warning("slack: could not reply to a click in the thread: %s", exc.reason)


def silenced(mention: str, hours: int, silence: Silence) -> str:
    """`🔕 @ana silenced alertname="APIDown", exchange="binance" for 4h, until ...`; label text
    escaped for mrkdwn."""
    what = escape(describe(silence.matchers))
    verb = "silenced" if silence.created else "asked again: already silenced"
    return (
        f"🔕 {mention} {verb} `{what}` for {hours}h, until {until(silence.ends_at)}"
        f" (silence `{silence.id}`)"
    )


def expire_button(silence_id: str) -> dict[str, Any]:
    return {
        "type": "actions",
        "block_id": "expire",
        "elements": [
            {
                "type": "button",
                "action_id": "expire-silence",
                "style": "danger",
                "text": {"type": "plain_text", "text": "🔔 Expire silence"},
                "value": expire_value(silence_id),
            }
        ],
    }


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}
