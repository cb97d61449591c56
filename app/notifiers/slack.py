"""Slack: Block Kit messages (slack_blocks.py) through slack-sdk, in bot mode (threads, updates,
edits in place) or webhook mode (no edits: the diagnosis follows as a message of its own).

`link_names` is off, and all text is escaped by slack_blocks. 429 is retried honouring Retry-After,
500/503 and connection errors with backoff (slack-sdk's retry handlers); what is left is a
NotifyError, retryable or not by Slack's error code.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from app.charts import ChartData
from app.formatting import shorten
from app.models import DiagnosisSource, EnrichedNotification
from app.notifiers.base import NotifyError, Progress, Sent, Thread
from app.notifiers.channels import slack_mode
from app.notifiers.chart_steps import send_charts
from app.notifiers.layout import headline
from app.notifiers.slack_blocks import (
    RESOLVED_COLOR,
    diagnosis_message,
    fit,
    message,
    render_blocks,
)

if TYPE_CHECKING:
    from app.config import Settings

log = logging.getLogger(__name__)

PERMANENT_ERRORS = {
    "invalid_auth": "invalid Slack token (invalid_auth)",
    "not_authed": "no Slack token sent (not_authed)",
    "account_inactive": "Slack token belongs to a deactivated account",
    "token_revoked": "Slack token was revoked",
    "token_expired": "Slack token expired",
    "missing_scope": "Slack token lacks the chat:write scope",
    "channel_not_found": "Slack channel not found (check SLACK_CHANNEL)",
    "not_in_channel": "the Slack bot is not in the channel (invite it)",
    "is_archived": "the Slack channel is archived",
    "msg_too_long": "Slack rejected the message as too long",
    "invalid_blocks": "Slack rejected the message blocks",
    "restricted_action": "posting is restricted in this Slack channel",
    "message_not_found": "the Slack message to edit is gone (deleted?)",
    "cant_update_message": "Slack does not let the bot edit that message",
    "edit_window_closed": "the Slack workspace no longer allows editing that message",
}


def retry_handlers() -> list[AsyncRetryHandler]:
    return [
        AsyncConnectionErrorRetryHandler(max_retry_count=2),
        AsyncRateLimitErrorRetryHandler(max_retry_count=3),
        AsyncServerErrorRetryHandler(max_retry_count=2),
    ]


def _unreachable(exc: Exception) -> NotifyError:
    return NotifyError("slack", f"Slack unreachable ({type(exc).__name__})", retryable=True)


def _api_error(exc: SlackApiError) -> NotifyError:
    code = str(exc.response.get("error", "unknown_error"))
    if code in PERMANENT_ERRORS:
        return NotifyError("slack", PERMANENT_ERRORS[code], retryable=False)
    return NotifyError(
        "slack", f"Slack API error {code} (HTTP {exc.response.status_code})", retryable=True
    )


class SlackBotNotifier:
    """Bot mode: chat.postMessage, replies in the original's thread, chat.update on resolve."""

    name = "slack"

    def __init__(
        self, client: AsyncWebClient, channel: str, *, charts: bool = False, buttons: bool = False
    ) -> None:
        self._client = client
        self._channel = channel
        self._charts = charts
        self._buttons = buttons

    async def send(
        self,
        notification: EnrichedNotification,
        thread: Thread | None,
        progress: Progress | None = None,
    ) -> str | None:
        """A new message, or a reply in the thread; on resolve, the original is updated as a
        step of its own, so a retry after a failed update does not post the reply again."""
        progress = progress or Progress()
        body = message(notification, buttons=self._buttons)
        try:
            if thread is None:
                return await progress.step("post", lambda: self._post(body))
            channel, _, ts = thread.ref.partition(":")
            broadcast = notification.kind == "escalation"
            ref = await progress.step(
                "reply",
                lambda: self._post(body, channel=channel, thread_ts=ts, reply_broadcast=broadcast),
            )
            original = thread.original
            if notification.status == "resolved" and original is not None:
                await progress.step(
                    "update", lambda: self._mark_resolved(channel, ts, original, notification)
                )
            return ref
        except SlackApiError as exc:
            raise _api_error(exc) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _unreachable(exc) from exc

    async def attach(
        self,
        notification: EnrichedNotification,
        ref: str | None,
        thread: Thread | None,
        progress: Progress | None = None,
    ) -> None:
        """After the message went out (and was recorded): its charts, as files in its thread (an
        escalation's: the incident's thread)."""
        channel, _, ts = (thread.ref if thread else ref or "").partition(":")
        if self._charts and channel and ts:
            upload = functools.partial(self._upload, channel=channel, thread_ts=ts)
            await send_charts(self.name, notification, progress or Progress(), upload)

    async def edit(
        self,
        notification: EnrichedNotification,
        sent: Sent,
        progress: Progress | None = None,
    ) -> str | None:
        """chat.update of the top-level message or thread reply `sent` ("channel:ts") with the
        body a new message would have, as step "edit". A message that is gone or may no longer
        be edited is a permanent error."""
        channel, _, ts = (sent.ref or "").partition(":")
        if not channel or not ts:
            raise NotifyError("slack", f"no message to edit (ref {sent.ref!r})", retryable=False)
        body = message(notification, buttons=self._buttons)

        async def update() -> str:
            await self._client.chat_update(channel=channel, ts=ts, **body, link_names=False)
            return f"{channel}:{ts}"

        try:
            return await (progress or Progress()).step("edit", update)
        except SlackApiError as exc:
            raise _api_error(exc) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _unreachable(exc) from exc

    async def post_in_thread(
        self, channel: str, thread_ts: str, text: str, blocks: list[dict[str, Any]]
    ) -> str:
        """A reply in a message's thread (what a silence button did); NotifyError on failure."""
        try:
            return await self._post(
                {"text": text, "blocks": blocks}, channel=channel, thread_ts=thread_ts
            )
        except SlackApiError as exc:
            raise _api_error(exc) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _unreachable(exc) from exc

    async def _upload(self, png: bytes, chart: ChartData, *, channel: str, thread_ts: str) -> str:
        """files_upload_v2 into the message's thread: getUploadURLExternal, the upload itself,
        completeUploadExternal (needs the files:write scope). The file's id."""
        response = await self._client.files_upload_v2(
            channel=channel,
            thread_ts=thread_ts,
            file=png,
            filename="chart.png",
            title=chart.title,
            alt_txt=f"Chart of {chart.title}",
        )
        return str(response["file"]["id"])

    async def _post(self, body: dict[str, Any], **extra: Any) -> str:
        """chat.postMessage; the message's reference, `channel:ts`."""
        extra.setdefault("channel", self._channel)
        response = await self._client.chat_postMessage(
            **body, **extra, link_names=False, unfurl_links=False, unfurl_media=False
        )
        return f"{response['channel']}:{response['ts']}"

    async def _mark_resolved(
        self, channel: str, ts: str, original: EnrichedNotification, resolved: EnrichedNotification
    ) -> None:
        """The original message keeps its diagnosis; its header, fields and colour say it is
        resolved."""
        if original.source.preliminary:  # resolved first: no edit will bring the AI diagnosis
            source = DiagnosisSource(kind="rules", reason="resolved before the AI diagnosis")
            original = original.model_copy(update={"source": source})
        blocks = render_blocks(original, resolution=resolved)
        text = fit(headline("resolved", "resolved", original.title, original.words), 300)
        try:
            await self._client.chat_update(
                channel=channel,
                ts=ts,
                text=text,
                attachments=[{"color": RESOLVED_COLOR, "blocks": blocks}],
            )
        except SlackApiError as exc:  # the thread reply went out; the update is cosmetic
            log.warning(
                "slack: resolved reply sent, header update failed: %s", exc.response.get("error")
            )

    async def ping(self) -> str:
        try:
            response = await self._client.auth_test()
        except SlackApiError as exc:
            raise _api_error(exc) from exc
        return f"bot {response.get('user')} in team {response.get('team')}, channel {self._channel}"

    async def close(self) -> None:
        session = getattr(self._client, "session", None)
        if session is not None:
            await session.close()


class SlackWebhookNotifier:
    """Incoming-webhook mode: the same message; no threads or edits, so follow-ups and final
    diagnoses are new messages."""

    name = "slack"

    def __init__(self, client: AsyncWebhookClient) -> None:
        self._client = client

    async def ping(self) -> str:
        return "webhook mode: configured, not probed (a probe would post a message)"

    async def close(self) -> None:
        if self._client.session is not None:
            await self._client.session.close()

    async def send(
        self,
        notification: EnrichedNotification,
        thread: Thread | None,
        progress: Progress | None = None,
    ) -> str | None:
        return await (progress or Progress()).step(
            "post", lambda: self._send(message(notification))
        )

    async def edit(
        self,
        notification: EnrichedNotification,
        sent: Sent,
        progress: Progress | None = None,
    ) -> str | None:
        """A webhook cannot edit what it posted: the diagnosis follows as a new message (step
        "follow-up"), headed "🩺 AI diagnosis: <title>". Webhook messages have no reference."""
        body = diagnosis_message(notification)
        return await (progress or Progress()).step("follow-up", lambda: self._send(body))

    async def _send(self, body: dict[str, Any]) -> None:
        try:
            response = await self._client.send(**body)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise NotifyError(
                "slack", f"Slack webhook unreachable ({type(exc).__name__})", retryable=True
            ) from exc
        if response.status_code == 200:
            return
        retryable = response.status_code == 429 or response.status_code >= 500
        raise NotifyError(
            "slack",
            f"Slack webhook answered HTTP {response.status_code}: {shorten(response.body, 200)}",
            retryable=retryable,
        )


SLACK_TIMEOUT_SECONDS = 15


def slack_session() -> aiohttp.ClientSession:
    """One session, so one pool of kept-alive connections, for every Slack call: without it
    slack-sdk opens a session (a TCP and TLS handshake) per call. With a session given, slack-sdk
    takes the timeout from it."""
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SLACK_TIMEOUT_SECONDS))


def slack_bot(settings: Settings) -> SlackBotNotifier | None:
    """The Slack bot's notifier, when bot mode is configured: also what the webhook's process
    updates a message with after a silence button's click."""
    if slack_mode(settings) != "bot":
        return None
    assert settings.slack_bot_token is not None and settings.slack_channel is not None
    client = AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url,
        timeout=SLACK_TIMEOUT_SECONDS,
        retry_handlers=retry_handlers(),
        session=slack_session(),
    )
    return SlackBotNotifier(
        client, settings.slack_channel, charts=settings.charts, buttons=settings.slack_buttons
    )


def slack_webhook(settings: Settings) -> SlackWebhookNotifier | None:
    """The incoming webhook's notifier, when that is the Slack mode configured."""
    if slack_mode(settings) != "webhook":
        return None
    assert settings.slack_webhook_url is not None
    webhook = AsyncWebhookClient(
        settings.slack_webhook_url.get_secret_value(),
        timeout=SLACK_TIMEOUT_SECONDS,
        retry_handlers=retry_handlers(),
        session=slack_session(),
    )
    return SlackWebhookNotifier(webhook)
