"""The LLM client's retry policy (tenacity strategies): exponential backoff with jitter that honours
a server's `Retry-After` (delta-seconds or an HTTP date, capped at MAX_RETRY_AFTER), and a stop
before a wait that would end past the call's deadline."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

from tenacity import RetryCallState, wait_exponential_jitter
from tenacity.stop import stop_base
from tenacity.wait import wait_base

if TYPE_CHECKING:  # the budget (app/cost.py) reads utc_now in the webhook's process: no httpx there
    import httpx

MAX_RETRY_AFTER = 60.0


class wait_retry_after(wait_base):  # noqa: N801 - tenacity's naming for wait strategies
    """Wait what the server asked for in Retry-After, else fall back to another strategy."""

    def __init__(self, fallback: wait_base) -> None:
        self._fallback = fallback

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome else None
        retry_after = getattr(exc, "retry_after", None)  # set by the LLM client's retryable errors
        if retry_after is not None:
            return min(float(retry_after), MAX_RETRY_AFTER)
        return float(self._fallback(retry_state))


class stop_past_deadline(stop_base):  # noqa: N801 - tenacity's naming for stop strategies
    """Stop when the next wait would end past the deadline: fail now rather than sleep in vain."""

    def __init__(self, deadline: float) -> None:
        self._deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        return time.monotonic() + retry_state.upcoming_sleep >= self._deadline


def default_wait() -> wait_base:
    return wait_retry_after(wait_exponential_jitter(multiplier=0.5, max=8, jitter=0.5))


def utc_now() -> datetime:
    """The clock Retry-After dates are measured against (and the LLM budget's UTC day)."""
    return datetime.now(UTC)


def retry_after_seconds(response: httpx.Response, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After of delta-seconds or an HTTP date (RFC 9110), else None."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None  # garbage: fall back to our own backoff
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # HTTP dates are always GMT
    return max(0.0, (when - now).total_seconds())
