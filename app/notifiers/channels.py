"""Which chat channels the settings configure, decided here for every process: `build.py` builds
these, and the webhook's process (which sends nothing itself) names them on /health without
loading slack-sdk or python-telegram-bot."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from app.config import Settings

SlackMode = Literal["bot", "webhook"]
KNOWN_CHANNELS = ("slack", "telegram", "console")  # what /health reports on, configured or not


def slack_mode(settings: Settings) -> SlackMode | None:
    """Bot mode (threads, edits, buttons) when a token and a channel are set, else an incoming
    webhook when its URL is set; bot mode wins when both are."""
    if settings.slack_bot_enabled:
        return "bot"
    if settings.slack_webhook_url is not None:
        return "webhook"
    return None


def channel_names(settings: Settings) -> list[str]:
    """The channels a message goes to: the console when no chat channel is configured."""
    names = ["slack"] if slack_mode(settings) else []
    names += ["telegram"] if settings.telegram_enabled else []
    return names or ["console"]


def shown(names: Iterable[str]) -> dict[str, bool]:
    """/health's channels: each known one, and whether messages go to it."""
    on = set(names)
    return {name: name in on for name in KNOWN_CHANNELS}
