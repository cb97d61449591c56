"""One Telegram Bot API call that carries a message's text, with the retries it deserves; sending
and editing both go through `call_with_retries`.

RetryAfter (an int or a timedelta) is honoured up to MAX_RETRY_AFTER; timeouts and network errors
are retried with backoff; "can't parse entities" repeats the call with the same text without HTML,
so the message still arrives. What is left becomes a NotifyError: a bad request, a bot that is not
in the chat or an invalid token is permanent, any other Telegram error retryable. The token never
appears in an error: PTB leaves it out of its messages.
"""

from __future__ import annotations

import html
import logging
import re
import warnings
from collections.abc import Awaitable, Callable
from datetime import timedelta

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

from app.notifiers.base import NotifyError

log = logging.getLogger(__name__)
# PTB 22.2+ warns from inside RetryAfter on every 429 that retry_after will become a timedelta;
# retry_after_seconds() accepts both, so that one warning is noise here.
RETRY_AFTER_WARNING = r".*retry_after.*timedelta"
warnings.filterwarnings("ignore", RETRY_AFTER_WARNING, PTBDeprecationWarning)

MAX_RETRY_AFTER = 60.0

# (parse_mode, text) -> the message id; called again with parse_mode None and plain text when
# Telegram cannot parse the HTML.
Call = Callable[[str | None, str], Awaitable[str]]
Sleep = Callable[[float], Awaitable[None]]


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


async def call_with_retries(call: Call, text: str, *, attempts: int, sleep: Sleep) -> str:
    """`call(ParseMode.HTML, text)`, retried as the module docstring says."""
    parse_mode: str | None = ParseMode.HTML
    for attempt in range(1, attempts + 1):
        try:
            return await call(parse_mode, text)
        except RetryAfter as exc:
            wait = retry_after_seconds(exc)
            if attempt == attempts or wait > MAX_RETRY_AFTER:
                raise NotifyError(
                    "telegram", f"rate limited, retry after {wait:g}s", retryable=True
                ) from exc
            await sleep(wait)
        except BadRequest as exc:
            if "can't parse entities" in exc.message.lower() and parse_mode is not None:
                log.warning("telegram rejected the HTML (%s); sending as plain text", exc.message)
                parse_mode, text = None, plain(text)
                continue
            raise NotifyError("telegram", f"bad request: {exc.message}", retryable=False) from exc
        except Forbidden as exc:
            raise NotifyError(
                "telegram", f"forbidden: {exc.message} (is the bot in the chat?)", retryable=False
            ) from exc
        except InvalidToken as exc:
            raise NotifyError("telegram", "invalid bot token", retryable=False) from exc
        except NetworkError as exc:  # includes TimedOut
            if attempt == attempts:
                raise NotifyError(
                    "telegram", f"network error: {exc.message}", retryable=True
                ) from exc
            await sleep(min(8.0, 0.5 * 2**attempt))
        except TelegramError as exc:
            raise NotifyError("telegram", f"error: {exc.message}", retryable=True) from exc
    raise NotifyError("telegram", "gave up", retryable=True)
