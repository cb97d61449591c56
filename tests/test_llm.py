import json
import logging
import time
from datetime import UTC, datetime

import httpx
import pytest
import respx
from tenacity import RetryCallState, wait_none
from tenacity.wait import wait_base

from app.llm import MAX_RETRY_AFTER, LLMClient, LLMError, default_wait
from tests.fakes import FAKE_LLM_KEY, GOOD_DIAGNOSIS, LLM_URL, chat_reply

URL = f"{LLM_URL}/chat/completions"
NOW = datetime(2026, 10, 21, 7, 27, 57, tzinfo=UTC)  # three seconds before the date below


def client(http: httpx.AsyncClient, **overrides) -> LLMClient:
    options = {
        "base_url": LLM_URL,
        "api_key": FAKE_LLM_KEY,
        "model": "deepseek-chat",
        "timeout": 5.0,
        "max_attempts": 3,
        "concurrency": 2,
        "wait": wait_none(),
    }
    options.update(overrides)
    return LLMClient(http, **options)


async def test_request_follows_the_contract(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(return_value=chat_reply(GOOD_DIAGNOSIS))
    async with httpx.AsyncClient() as http:
        diagnosis = await client(http).diagnose("system text", "user text")
    assert diagnosis.action_items == GOOD_DIAGNOSIS["action_items"]
    request = route.calls[0].request
    assert request.headers["authorization"] == f"Bearer {FAKE_LLM_KEY}"
    body = json.loads(request.content)
    assert body == {
        "model": "deepseek-chat",
        "messages": [
            {"role": "system", "content": "system text"},
            {"role": "user", "content": "user text"},
        ],
        "temperature": 0.3,
        "max_tokens": 2048,
        "response_format": {"type": "json_object"},
    }


@pytest.mark.parametrize("status", [429, 500, 502, 503])
async def test_transient_status_is_retried_then_succeeds(
    respx_mock: respx.MockRouter, status: int
) -> None:
    route = respx_mock.post(URL).mock(
        side_effect=[httpx.Response(status), chat_reply(GOOD_DIAGNOSIS)]
    )
    async with httpx.AsyncClient() as http:
        await client(http).diagnose("s", "u")
    assert route.call_count == 2


async def test_transport_errors_are_retried_up_to_max_attempts(
    respx_mock: respx.MockRouter,
) -> None:
    route = respx_mock.post(URL).mock(side_effect=httpx.ConnectError("refused"))
    async with httpx.AsyncClient() as http:
        with pytest.raises(LLMError, match="unreachable"):
            await client(http).diagnose("s", "u")
    assert route.call_count == 3


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (401, "invalid LLM API key"),
        (402, "out of credit"),
        (404, "not found"),
    ],
)
async def test_permanent_errors_fail_at_once_in_plain_words(
    respx_mock: respx.MockRouter, status: int, words: str
) -> None:
    route = respx_mock.post(URL).mock(return_value=httpx.Response(status))
    async with httpx.AsyncClient() as http:
        with pytest.raises(LLMError, match=words):
            await client(http).diagnose("s", "u")
    assert route.call_count == 1


async def test_retry_after_is_honoured(respx_mock: respx.MockRouter) -> None:
    respx_mock.post(URL).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "0.3"}),
            chat_reply(GOOD_DIAGNOSIS),
        ]
    )
    async with httpx.AsyncClient() as http:
        llm = client(http, wait=None)  # the production wait strategy
        started = time.monotonic()
        await llm.diagnose("s", "u")
    assert 0.3 <= time.monotonic() - started < 2


async def test_retry_after_beyond_the_budget_gives_up_without_waiting(
    respx_mock: respx.MockRouter,
) -> None:
    route = respx_mock.post(URL).mock(
        return_value=httpx.Response(429, headers={"Retry-After": "30"})
    )
    async with httpx.AsyncClient() as http:
        started = time.monotonic()
        with pytest.raises(LLMError, match="rate limited"):
            await client(http, wait=None, timeout=2.0).diagnose("s", "u")
    assert time.monotonic() - started < 1
    assert route.call_count == 1


async def test_a_hanging_server_is_cut_off_at_the_total_budget(
    respx_mock: respx.MockRouter,
) -> None:
    respx_mock.post(URL).mock(side_effect=httpx.ReadTimeout("no answer"))
    async with httpx.AsyncClient() as http:
        with pytest.raises(LLMError, match="timed out"):
            await client(http, timeout=0.5).diagnose("s", "u")


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("The binance API is down, restart it.", "not valid JSON"),
        ("[1, 2]", "not an object"),
        (json.dumps({"diagnosis": "x"}), "action_items"),
        (json.dumps({**GOOD_DIAGNOSIS, "action_items": 7}), "action_items"),
    ],
)
async def test_replies_that_are_not_a_diagnosis_fail(
    respx_mock: respx.MockRouter, content: str, words: str
) -> None:
    respx_mock.post(URL).mock(return_value=chat_reply(content))
    async with httpx.AsyncClient() as http:
        with pytest.raises(LLMError, match=words):
            await client(http).diagnose("s", "u")


async def test_fenced_json_from_lenient_servers_is_accepted(respx_mock: respx.MockRouter) -> None:
    respx_mock.post(URL).mock(
        return_value=chat_reply(f"```json\n{json.dumps(GOOD_DIAGNOSIS)}\n```")
    )
    async with httpx.AsyncClient() as http:
        assert (await client(http).diagnose("s", "u")).impact == GOOD_DIAGNOSIS["impact"]


async def test_no_key_fails_without_any_request(respx_mock: respx.MockRouter) -> None:
    async with httpx.AsyncClient() as http:
        with pytest.raises(LLMError, match="no LLM API key"):
            await client(http, api_key=None).diagnose("s", "u")
    assert not respx_mock.calls


class RecordedWait(wait_base):
    """The production wait strategy, recorded instead of slept: retries go out at once."""

    def __init__(self) -> None:
        self._policy = default_wait()
        self.waits: list[float] = []

    def __call__(self, retry_state: RetryCallState) -> float:
        self.waits.append(self._policy(retry_state))
        return 0.0


def sent_bodies(route: respx.Route) -> list[dict[str, object]]:
    return [json.loads(call.request.content) for call in route.calls]


async def test_max_tokens_is_sent(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(return_value=chat_reply(GOOD_DIAGNOSIS))
    async with httpx.AsyncClient() as http:
        await client(http, max_tokens=512).diagnose("s", "u")
    assert sent_bodies(route)[0]["max_tokens"] == 512


async def test_server_rejecting_response_format_gets_one_retry_without_it(
    respx_mock: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    route = respx_mock.post(URL).mock(side_effect=[httpx.Response(400), chat_reply(GOOD_DIAGNOSIS)])
    async with httpx.AsyncClient() as http:
        with caplog.at_level(logging.WARNING, logger="app.llm"):
            diagnosis = await client(http, max_attempts=1).diagnose("s", "u")
    assert diagnosis.impact == GOOD_DIAGNOSIS["impact"]
    with_format, without_format = sent_bodies(route)
    assert with_format["response_format"] == {"type": "json_object"}
    assert "response_format" not in without_format
    assert without_format == {k: v for k, v in with_format.items() if k != "response_format"}
    [warning] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warning.levelno == logging.WARNING
    assert "rejects response_format" in warning.getMessage()


async def test_after_a_response_format_rejection_later_calls_skip_it_straight_away(
    respx_mock: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    route = respx_mock.post(URL).mock(
        side_effect=[httpx.Response(400), chat_reply(GOOD_DIAGNOSIS), chat_reply(GOOD_DIAGNOSIS)]
    )
    async with httpx.AsyncClient() as http:
        llm = client(http)
        with caplog.at_level(logging.WARNING, logger="app.llm"):
            await llm.diagnose("s", "u")
            await llm.diagnose("s", "u")
    assert route.call_count == 3  # two for the first call, one for the second
    assert "response_format" not in sent_bodies(route)[2]
    assert len([r for r in caplog.records if "response_format" in r.getMessage()]) == 1


async def test_reply_without_json_mode_is_still_checked_as_a_diagnosis(
    respx_mock: respx.MockRouter,
) -> None:
    respx_mock.post(URL).mock(
        side_effect=[httpx.Response(400), chat_reply("The exchange is down, restart it.")]
    )
    async with httpx.AsyncClient() as http:
        with pytest.raises(LLMError, match="not valid JSON"):
            await client(http).diagnose("s", "u")


async def test_a_400_with_and_without_response_format_is_the_permanent_bad_request(
    respx_mock: respx.MockRouter,
) -> None:
    route = respx_mock.post(URL).mock(return_value=httpx.Response(400))
    async with httpx.AsyncClient() as http:
        llm = client(http)
        with pytest.raises(LLMError, match=r"^LLM API rejected the request \(400 bad request\)$"):
            await llm.diagnose("s", "u")
        assert route.call_count == 2  # no tenacity retries on top
        # The server took neither, so response_format was not the problem: keep asking for JSON.
        with pytest.raises(LLMError, match="400 bad request"):
            await llm.diagnose("s", "u")
    assert "response_format" in sent_bodies(route)[2]


async def test_retry_after_http_date_is_honoured(respx_mock: respx.MockRouter) -> None:
    respx_mock.post(URL).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}),
            chat_reply(GOOD_DIAGNOSIS),
        ]
    )
    wait = RecordedWait()
    async with httpx.AsyncClient() as http:
        await client(http, wait=wait, now=lambda: NOW).diagnose("s", "u")
    assert wait.waits == [3.0]


async def test_retry_after_http_date_in_the_past_means_no_wait(
    respx_mock: respx.MockRouter,
) -> None:
    respx_mock.post(URL).mock(
        side_effect=[
            httpx.Response(503, headers={"Retry-After": "Wed, 21 Oct 2026 07:00:00 GMT"}),
            chat_reply(GOOD_DIAGNOSIS),
        ]
    )
    wait = RecordedWait()
    async with httpx.AsyncClient() as http:
        await client(http, wait=wait, now=lambda: NOW).diagnose("s", "u")
    assert wait.waits == [0.0]


async def test_retry_after_http_date_is_capped(respx_mock: respx.MockRouter) -> None:
    respx_mock.post(URL).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "Thu, 22 Oct 2026 07:28:00 GMT"}),
            chat_reply(GOOD_DIAGNOSIS),
        ]
    )
    wait = RecordedWait()
    async with httpx.AsyncClient() as http:
        await client(http, wait=wait, timeout=300.0, now=lambda: NOW).diagnose("s", "u")
    assert wait.waits == [MAX_RETRY_AFTER]


async def test_retry_after_http_date_beyond_the_budget_gives_up_without_waiting(
    respx_mock: respx.MockRouter,
) -> None:
    route = respx_mock.post(URL).mock(
        return_value=httpx.Response(429, headers={"Retry-After": "Wed, 21 Oct 2026 07:28:30 GMT"})
    )
    async with httpx.AsyncClient() as http:
        started = time.monotonic()
        with pytest.raises(LLMError, match="rate limited"):
            await client(http, wait=None, timeout=2.0, now=lambda: NOW).diagnose("s", "u")
    assert time.monotonic() - started < 1
    assert route.call_count == 1


@pytest.mark.parametrize("value", ["soon", "Wed, 32 Oct 2026 07:28:00 GMT", ""])
async def test_garbage_retry_after_falls_back_to_backoff(
    respx_mock: respx.MockRouter, value: str
) -> None:
    respx_mock.post(URL).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": value}),
            chat_reply(GOOD_DIAGNOSIS),
        ]
    )
    wait = RecordedWait()
    async with httpx.AsyncClient() as http:
        await client(http, wait=wait, now=lambda: NOW).diagnose("s", "u")
    [waited] = wait.waits
    assert 0.5 <= waited <= 1.0  # the first exponential step with its jitter
