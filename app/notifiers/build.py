"""The configured chat channels' notifiers, built here and only here (channels.py decides which)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from telegram import Bot

from app.notifiers.base import Notifier
from app.notifiers.console import ConsoleNotifier
from app.notifiers.slack import slack_bot, slack_webhook
from app.notifiers.telegram import TelegramNotifier
from app.notifiers.telegram_http import AiohttpRequest

if TYPE_CHECKING:
    from app.config import Settings

log = logging.getLogger(__name__)


def build_notifiers(settings: Settings) -> list[Notifier]:
    """Every configured channel; the console when none is configured."""
    notifiers: list[Notifier] = []
    bot = slack_bot(settings)
    if bot is not None:
        notifiers.append(bot)
        if settings.slack_webhook_url:
            log.info("both Slack modes configured: using bot mode (threads); webhook URL unused")
    else:
        webhook = slack_webhook(settings)
        if webhook is not None:
            notifiers.append(webhook)
    if settings.telegram_enabled:
        assert settings.telegram_bot_token is not None and settings.telegram_chat_id is not None
        telegram_bot = Bot(
            settings.telegram_bot_token.get_secret_value(),
            base_url=settings.telegram_api_url,
            request=AiohttpRequest(connect_timeout=5, read_timeout=15, write_timeout=15),
            get_updates_request=AiohttpRequest(pool_size=1),  # never used: no httpx client idle
        )
        notifiers.append(
            TelegramNotifier(
                telegram_bot,
                settings.telegram_chat_id,
                settings.telegram_thread_id,
                charts=settings.charts,
                buttons=settings.telegram_buttons,
            )
        )
    return notifiers or [ConsoleNotifier()]
