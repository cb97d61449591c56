import json
import time

import httpx
import pytest
import respx
from tenacity import wait_none

from app.llm import LLMClient, LLMError
from tests.fakes import FAKE_LLM_KEY, GOOD_DIAGNOSIS, LLM_URL, chat_reply

URL = f"{LLM_URL}/chat/completions"


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
        (400, "bad request"),
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
