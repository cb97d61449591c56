"""One Telegram call and its retries, driven by a scripted call: what is retried, after how long,
what gives up, and what the NotifyError says."""

from __future__ import annotations

import html
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from telegram.error import (
    BadRequest,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)

from app.notifiers.base import NotifyError
from app.notifiers.telegram_calls import call_with_retries, plain, retry_after_seconds

# Telegram's documented ceiling for a flood wait this service is willing to honour in place
HONOURED_WAIT = 60


class ScriptedCall:
    """Raises the scripted errors in turn, then answers with a message id; records every call."""

    def __init__(self, *outcomes: Exception | str) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[tuple[str | None, str]] = []

    async def __call__(self, parse_mode: str | None, text: str) -> str:
        self.calls.append((parse_mode, text))
        outcome = self.outcomes.pop(0) if self.outcomes else "1"
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


async def run(call: ScriptedCall, attempts: int = 4, text: str = "<b>hi</b>") -> tuple[str, Sleeps]:
    sleeps = Sleeps()
    ref = await call_with_retries(call, text, attempts=attempts, sleep=sleeps)
    return ref, sleeps


async def failure(call: ScriptedCall, attempts: int = 4) -> tuple[NotifyError, Sleeps]:
    sleeps = Sleeps()
    with pytest.raises(NotifyError) as raised:
        await call_with_retries(call, "<b>hi</b>", attempts=attempts, sleep=sleeps)
    return raised.value, sleeps


async def test_a_message_goes_out_as_html_on_the_first_try() -> None:
    call = ScriptedCall("42")
    ref, sleeps = await run(call)
    assert ref == "42"
    assert call.calls == [("HTML", "<b>hi</b>")]
    assert sleeps.waits == []


async def test_a_429_waits_the_retry_after_telegram_names_then_sends_once() -> None:
    call = ScriptedCall(RetryAfter(7), RetryAfter(timedelta(seconds=2.5)), "9")
    ref, sleeps = await run(call)
    assert ref == "9"
    assert sleeps.waits == [7.0, 2.5]
    assert call.calls == [("HTML", "<b>hi</b>")] * 3


async def test_a_429_of_exactly_sixty_seconds_is_still_honoured() -> None:
    call = ScriptedCall(RetryAfter(HONOURED_WAIT), "3")
    ref, sleeps = await run(call)
    assert ref == "3" and sleeps.waits == [60.0]


async def test_a_429_longer_than_a_minute_is_given_back_as_retryable_without_waiting() -> None:
    call = ScriptedCall(RetryAfter(HONOURED_WAIT + 1))
    error, sleeps = await failure(call)
    assert error.retryable is True
    assert str(error) == "telegram: rate limited, retry after 61s"
    assert sleeps.waits == [] and len(call.calls) == 1
    assert isinstance(error.__cause__, RetryAfter)


async def test_a_429_on_the_last_attempt_gives_up_as_retryable() -> None:
    call = ScriptedCall(*[RetryAfter(1)] * 3)
    error, sleeps = await failure(call, attempts=3)
    assert error.retryable is True and error.reason == "rate limited, retry after 1s"
    assert len(call.calls) == 3 and sleeps.waits == [1.0, 1.0]


async def test_network_errors_are_retried_with_doubling_backoff_capped_at_eight_seconds() -> None:
    call = ScriptedCall(*[NetworkError("reset")] * 5, TimedOut("slow"), "77")
    ref, sleeps = await run(call, attempts=7)
    assert ref == "77"
    assert sleeps.waits == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert len(call.calls) == 7


async def test_a_network_error_on_every_attempt_is_retryable_and_names_the_error() -> None:
    call = ScriptedCall(*[NetworkError("connection reset")] * 4)
    error, sleeps = await failure(call, attempts=4)
    assert error.retryable is True
    assert str(error) == "telegram: network error: connection reset"
    assert len(call.calls) == 4 and len(sleeps.waits) == 3
    assert isinstance(error.__cause__, NetworkError)


async def test_a_single_attempt_is_made_exactly_once() -> None:
    call = ScriptedCall(NetworkError("down"), "never")
    error, sleeps = await failure(call, attempts=1)
    assert error.retryable is True and len(call.calls) == 1 and sleeps.waits == []


async def test_no_attempts_at_all_gives_up_retryable_without_calling() -> None:
    call = ScriptedCall("1")
    error, _ = await failure(call, attempts=0)
    assert str(error) == "telegram: gave up" and error.retryable is True
    assert call.calls == []


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (BadRequest("Bad Request: chat not found"), "bad request: Chat not found"),
        (
            Forbidden("Forbidden: bot was kicked from the group chat"),
            "forbidden: Forbidden: bot was kicked from the group chat (is the bot in the chat?)",
        ),
        (InvalidToken("Not Found"), "invalid bot token"),
    ],
)
async def test_a_400_403_or_bad_token_is_permanent_and_never_retried(
    exc: TelegramError, reason: str
) -> None:
    call = ScriptedCall(exc, "never")
    error, sleeps = await failure(call)
    assert error.retryable is False
    assert str(error) == f"telegram: {reason}"
    assert len(call.calls) == 1 and sleeps.waits == []
    assert error.__cause__ is exc


async def test_any_other_telegram_error_is_retryable_later_but_not_retried_now() -> None:
    exc = TelegramError("Conflict: terminated by other getUpdates request")
    call = ScriptedCall(exc, "never")
    error, sleeps = await failure(call)
    assert error.retryable is True
    assert str(error) == "telegram: error: Conflict: terminated by other getUpdates request"
    assert len(call.calls) == 1 and sleeps.waits == []
    assert error.__cause__ is exc


async def test_html_telegram_cannot_parse_is_sent_again_as_plain_text_at_once() -> None:
    call = ScriptedCall(BadRequest("Bad Request: can't parse entities: unexpected end tag"), "5")
    ref, sleeps = await run(call, text='<b>a &lt; b</b> <a href="https://x/?a=1&amp;b=2">x</a>')
    assert ref == "5"
    assert call.calls[1] == (None, "a < b x")
    assert sleeps.waits == []


async def test_plain_text_telegram_still_cannot_parse_is_a_permanent_bad_request() -> None:
    parse = "Bad Request: can't parse entities: unsupported start tag"
    call = ScriptedCall(BadRequest(parse), BadRequest(parse), "never")
    error, _ = await failure(call)
    assert error.retryable is False
    assert error.reason == "bad request: Can't parse entities: unsupported start tag"
    assert [mode for mode, _ in call.calls] == ["HTML", None]


async def test_the_plain_text_fallback_is_one_of_the_attempts() -> None:
    call = ScriptedCall(BadRequest("can't parse entities"), NetworkError("blip"), "8")
    ref, sleeps = await run(call, attempts=3)
    assert ref == "8"
    assert [mode for mode, _ in call.calls] == ["HTML", None, None]
    assert sleeps.waits == [2.0], "the network error came on attempt 2 of 3"


def test_retry_after_is_read_in_seconds_whether_an_int_or_a_timedelta() -> None:
    assert retry_after_seconds(RetryAfter(12)) == 12.0
    assert retry_after_seconds(RetryAfter(timedelta(milliseconds=1500))) == 1.5


def test_plain_strips_every_tag_and_unescapes_every_entity() -> None:
    assert plain("<b>x</b> <i>&lt;&gt;&amp;&quot;</i> <code>a</code>") == 'x <>&" a'


HOSTILE = st.text(
    alphabet=st.sampled_from([*"<>&\"' ab", "😀", "\U0001f9ea", "\u0301", "\U00010348"]),
    max_size=200,
)


@given(HOSTILE)
def test_plain_gives_back_any_text_that_was_escaped(text: str) -> None:
    assert plain(f"<b>{html.escape(text)}</b>") == text
