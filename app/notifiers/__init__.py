"""Chat channels. Each is one module implementing the `Notifier` Protocol of `base.py`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient
from telegram import Bot

from app.notifiers.base import Notifier
from app.notifiers.console import ConsoleNotifier
from app.notifiers.slack import SlackBotNotifier, SlackWebhookNotifier, retry_handlers
from app.notifiers.telegram import TelegramNotifier
from app.notifiers.telegram_http import AiohttpRequest

if TYPE_CHECKING:
    from app.config import Settings

log = logging.getLogger(__name__)

SLACK_TIMEOUT_SECONDS = 15


def slack_session() -> aiohttp.ClientSession:
    """One session, so one pool of kept-alive connections, for every Slack call: without it
    slack-sdk opens a session (a TCP and TLS handshake) per call. With a session given, slack-sdk
    takes the timeout from it."""
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SLACK_TIMEOUT_SECONDS))


def build_notifiers(settings: Settings) -> list[Notifier]:
    """Every configured channel, built here and only here; the console when none is configured."""
    notifiers: list[Notifier] = []
    if settings.slack_bot_token and settings.slack_channel:
        client = AsyncWebClient(
            token=settings.slack_bot_token.get_secret_value(),
            base_url=settings.slack_api_url,
            timeout=SLACK_TIMEOUT_SECONDS,
            retry_handlers=retry_handlers(),
            session=slack_session(),
        )
        notifiers.append(
            SlackBotNotifier(
                client,
                settings.slack_channel,
                charts=settings.charts,
                buttons=settings.slack_buttons,
            )
        )
        if settings.slack_webhook_url:
            log.info("both Slack modes configured: using bot mode (threads); webhook URL unused")
    elif settings.slack_webhook_url:
        webhook = AsyncWebhookClient(
            settings.slack_webhook_url.get_secret_value(),
            timeout=SLACK_TIMEOUT_SECONDS,
            retry_handlers=retry_handlers(),
            session=slack_session(),
        )
        notifiers.append(SlackWebhookNotifier(webhook))
    if settings.telegram_bot_token and settings.telegram_chat_id:
        bot = Bot(
            settings.telegram_bot_token.get_secret_value(),
            base_url=settings.telegram_api_url,
            request=AiohttpRequest(connect_timeout=5, read_timeout=15, write_timeout=15),
            get_updates_request=AiohttpRequest(pool_size=1),  # never used: no httpx client idle
        )
        notifiers.append(
            TelegramNotifier(
                bot,
                settings.telegram_chat_id,
                settings.telegram_thread_id,
                charts=settings.charts,
                buttons=settings.telegram_buttons,
            )
        )
    return notifiers or [ConsoleNotifier()]
