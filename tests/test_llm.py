import asyncio
import json
import logging
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx
from tenacity import RetryCallState, wait_none
from tenacity.wait import wait_base

from app.cost import Usage
from app.llm import LLMClient, LLMError
from app.llm_retry import MAX_RETRY_AFTER, default_wait
from app.metrics import Metrics
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
        diagnosis = (await client(http).diagnose("system text", "user text")).diagnosis
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


async def test_retry_after_beyond_the_budget_gives_up_without_waiting(
    respx_mock: respx.MockRouter,
) -> None:
    route = respx_mock.post(URL).mock(
        return_value=httpx.Response(429, headers={"Retry-After": "30"})
    )
    async with httpx.AsyncClient() as http:
        # Waiting would run into the 2s deadline and fail as "timed out" instead.
        with pytest.raises(LLMError, match=r"^LLM rate limited \(429\)$"):
            await client(http, wait=None, timeout=2.0).diagnose("s", "u")
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
        answer = await client(http).diagnose("s", "u")
    assert answer.diagnosis.impact == GOOD_DIAGNOSIS["impact"]


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


async def waits_after(
    respx_mock: respx.MockRouter, status: int, retry_after: str, **options: Any
) -> list[float]:
    """The waits the client chose for one `status` reply carrying Retry-After, then a good one."""
    respx_mock.post(URL).mock(
        side_effect=[
            httpx.Response(status, headers={"Retry-After": retry_after}),
            chat_reply(GOOD_DIAGNOSIS),
        ]
    )
    wait = RecordedWait()
    async with httpx.AsyncClient() as http:
        await client(http, wait=wait, **options).diagnose("s", "u")
    return wait.waits


async def test_retry_after_is_honoured(respx_mock: respx.MockRouter) -> None:
    assert await waits_after(respx_mock, 429, "0.3") == [0.3]


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
            answer = await client(http, max_attempts=1).diagnose("s", "u")
    assert answer.diagnosis.impact == GOOD_DIAGNOSIS["impact"]
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
    waits = await waits_after(respx_mock, 429, "Wed, 21 Oct 2026 07:28:00 GMT", now=lambda: NOW)
    assert waits == [3.0]


async def test_retry_after_http_date_in_the_past_means_no_wait(
    respx_mock: respx.MockRouter,
) -> None:
    waits = await waits_after(respx_mock, 503, "Wed, 21 Oct 2026 07:00:00 GMT", now=lambda: NOW)
    assert waits == [0.0]


async def test_retry_after_http_date_is_capped(respx_mock: respx.MockRouter) -> None:
    waits = await waits_after(
        respx_mock, 429, "Thu, 22 Oct 2026 07:28:00 GMT", timeout=300.0, now=lambda: NOW
    )
    assert waits == [MAX_RETRY_AFTER]


async def test_retry_after_http_date_beyond_the_budget_gives_up_without_waiting(
    respx_mock: respx.MockRouter,
) -> None:
    route = respx_mock.post(URL).mock(
        return_value=httpx.Response(429, headers={"Retry-After": "Wed, 21 Oct 2026 07:28:30 GMT"})
    )
    async with httpx.AsyncClient() as http:
        with pytest.raises(LLMError, match=r"^LLM rate limited \(429\)$"):
            await client(http, wait=None, timeout=2.0, now=lambda: NOW).diagnose("s", "u")
    assert route.call_count == 1


@pytest.mark.parametrize("value", ["soon", "Wed, 32 Oct 2026 07:28:00 GMT", ""])
async def test_garbage_retry_after_falls_back_to_backoff(
    respx_mock: respx.MockRouter, value: str
) -> None:
    [waited] = await waits_after(respx_mock, 429, value, now=lambda: NOW)
    assert 0.5 <= waited <= 1.0  # the first exponential step with its jitter


async def test_the_whole_call_is_cut_off_at_the_deadline_when_the_server_never_answers(
    respx_mock: respx.MockRouter,
) -> None:
    never = asyncio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        await never.wait()
        return chat_reply(GOOD_DIAGNOSIS)

    respx_mock.post(URL).mock(side_effect=hang)
    async with httpx.AsyncClient() as http:
        with pytest.raises(LLMError, match=r"^LLM timed out after 0\.2s$"):
            # the outer bound only keeps a client without a deadline from hanging the test
            await asyncio.wait_for(client(http, timeout=0.2).diagnose("s", "u"), 30)


@pytest.mark.parametrize("budget", [1.0, 7.0])
async def test_each_request_gets_at_most_the_time_left_in_the_budget(
    respx_mock: respx.MockRouter, budget: float
) -> None:
    route = respx_mock.post(URL).mock(return_value=chat_reply(GOOD_DIAGNOSIS))
    async with httpx.AsyncClient(timeout=5.0) as http:  # the client's own default is not used
        await client(http, timeout=budget).diagnose("s", "u")
    read = route.calls[0].request.extensions["timeout"]["read"]
    assert budget - 0.5 < read <= budget


@pytest.mark.parametrize("max_attempts", [1, 2, 4])
async def test_transient_failures_are_tried_exactly_max_attempts_times(
    respx_mock: respx.MockRouter, max_attempts: int
) -> None:
    route = respx_mock.post(URL).mock(return_value=httpx.Response(503))
    async with httpx.AsyncClient() as http:
        with pytest.raises(LLMError, match=r"^LLM server error \(503\)$"):
            await client(http, max_attempts=max_attempts).diagnose("s", "u")
    assert route.call_count == max_attempts


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (httpx.ReadTimeout("slow"), "LLM request timed out"),
        (httpx.ConnectTimeout("slow"), "LLM request timed out"),
        (httpx.ConnectError("refused"), "LLM unreachable (ConnectError)"),
        (httpx.RemoteProtocolError("eof"), "LLM unreachable (RemoteProtocolError)"),
    ],
)
async def test_timeouts_and_transport_errors_are_retried_and_named(
    respx_mock: respx.MockRouter, error: Exception, reason: str
) -> None:
    route = respx_mock.post(URL).mock(side_effect=error)
    async with httpx.AsyncClient() as http:
        with pytest.raises(LLMError) as raised:
            await client(http).diagnose("s", "u")
    assert str(raised.value) == reason
    assert route.call_count == 3


@pytest.mark.parametrize("status", [500, 501, 504, 599])
async def test_every_5xx_is_retried(respx_mock: respx.MockRouter, status: int) -> None:
    route = respx_mock.post(URL).mock(
        side_effect=[httpx.Response(status), chat_reply(GOOD_DIAGNOSIS)]
    )
    async with httpx.AsyncClient() as http:
        await client(http).diagnose("s", "u")
    assert route.call_count == 2


@pytest.mark.parametrize("status", [201, 302, 418, 422, 499])
async def test_other_unexpected_statuses_fail_at_once(
    respx_mock: respx.MockRouter, status: int
) -> None:
    route = respx_mock.post(URL).mock(return_value=httpx.Response(status, json={}))
    async with httpx.AsyncClient() as http:
        with pytest.raises(LLMError) as raised:
            await client(http).diagnose("s", "u")
    assert str(raised.value) == f"LLM API answered HTTP {status}"
    assert route.call_count == 1


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (401, "invalid LLM API key (401)"),
        (402, "LLM account out of credit (402 payment required)"),
        (403, "LLM API key lacks permission for this model (403)"),
        (404, "LLM endpoint or model not found (404): check LLM_BASE_URL and LLM_MODEL"),
    ],
)
async def test_permanent_errors_are_never_retried_even_with_retry_after(
    respx_mock: respx.MockRouter, status: int, reason: str
) -> None:
    route = respx_mock.post(URL).mock(
        return_value=httpx.Response(status, headers={"Retry-After": "0"})
    )
    async with httpx.AsyncClient() as http:
        with pytest.raises(LLMError) as raised:
            await client(http, max_attempts=5).diagnose("s", "u")
    assert str(raised.value) == reason
    assert route.call_count == 1


async def test_retry_after_on_a_server_error_is_honoured(respx_mock: respx.MockRouter) -> None:
    assert await waits_after(respx_mock, 503, "2") == [2.0]


@pytest.mark.parametrize(("value", "waited"), [("-5", 0.0), ("0", 0.0), ("120", MAX_RETRY_AFTER)])
async def test_retry_after_seconds_are_clamped_between_zero_and_the_cap(
    respx_mock: respx.MockRouter, value: str, waited: float
) -> None:
    assert await waits_after(respx_mock, 429, value, timeout=300.0) == [waited]


async def test_retry_after_http_date_without_a_zone_is_read_as_utc(
    respx_mock: respx.MockRouter,
) -> None:
    waits = await waits_after(respx_mock, 429, "Wed, 21 Oct 2026 07:28:00 -0000", now=lambda: NOW)
    assert waits == [3.0]


async def test_retry_after_http_date_is_measured_against_the_real_clock_by_default(
    respx_mock: respx.MockRouter,
) -> None:
    assert await waits_after(respx_mock, 429, "Wed, 21 Oct 2015 07:28:00 GMT") == [0.0]


async def test_backoff_doubles_from_half_a_second_with_jitter_up_to_eight_seconds(
    respx_mock: respx.MockRouter,
) -> None:
    respx_mock.post(URL).mock(side_effect=httpx.ConnectError("refused"))
    wait = RecordedWait()
    async with httpx.AsyncClient() as http:
        with pytest.raises(LLMError, match="unreachable"):
            await client(http, wait=wait, max_attempts=8, timeout=300.0).diagnose("s", "u")
    assert len(wait.waits) >= 7
    for step, waited in enumerate(wait.waits[:4]):
        base = 0.5 * 2**step
        assert base <= waited <= base + 0.5, (step, waited)
    assert set(wait.waits[4:]) == {8.0}


async def test_a_trailing_slash_in_the_base_url_is_tolerated(
    respx_mock: respx.MockRouter,
) -> None:
    route = respx_mock.post(URL).mock(return_value=chat_reply(GOOD_DIAGNOSIS))
    async with httpx.AsyncClient() as http:
        await client(http, base_url=f"{LLM_URL}/").diagnose("s", "u")
    assert route.call_count == 1


async def test_a_reply_missing_fields_names_them_all(respx_mock: respx.MockRouter) -> None:
    partial = {k: v for k, v in GOOD_DIAGNOSIS.items() if k not in ("impact", "action_items")}
    respx_mock.post(URL).mock(return_value=chat_reply(partial))
    async with httpx.AsyncClient() as http:
        with pytest.raises(LLMError) as raised:
            await client(http).diagnose("s", "u")
    assert str(raised.value) == "LLM reply is missing or has invalid fields: action_items, impact"


@pytest.mark.parametrize(
    "body",
    [
        b"not json at all",
        b'{"id": "x"}',
        b'{"choices": []}',
        b'{"choices": null}',
        b'{"choices": [{"message": null}]}',
    ],
)
async def test_a_body_that_is_not_a_chat_completion_fails_without_retry(
    respx_mock: respx.MockRouter, body: bytes
) -> None:
    route = respx_mock.post(URL).mock(return_value=httpx.Response(200, content=body))
    async with httpx.AsyncClient() as http:
        with pytest.raises(LLMError) as raised:
            await client(http).diagnose("s", "u")
    assert str(raised.value) == "LLM reply is not a chat completion"
    assert route.call_count == 1


async def test_a_completion_without_text_content_fails(respx_mock: respx.MockRouter) -> None:
    body = {"choices": [{"message": {"role": "assistant", "content": None}}]}
    respx_mock.post(URL).mock(return_value=httpx.Response(200, json=body))
    async with httpx.AsyncClient() as http:
        with pytest.raises(LLMError) as raised:
            await client(http).diagnose("s", "u")
    assert str(raised.value) == "LLM reply has no text content"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("The binance API is down.", "LLM reply is not valid JSON"),
        ('{"diagnosis": ', "LLM reply is not valid JSON"),
        ('"just a string"', "LLM reply is JSON but not an object"),
        ("null", "LLM reply is JSON but not an object"),
    ],
)
async def test_invalid_json_falls_back_with_a_plain_reason_and_no_retry(
    respx_mock: respx.MockRouter, content: str, reason: str
) -> None:
    route = respx_mock.post(URL).mock(return_value=chat_reply(content))
    async with httpx.AsyncClient() as http:
        with pytest.raises(LLMError) as raised:
            await client(http).complete_json("s", "u")
    assert str(raised.value) == reason
    assert route.call_count == 1


@pytest.mark.parametrize(
    "fenced",
    [
        "```json\n{body}\n```",
        "```\n{body}\n```",
        "  ```json {body}```  ",
    ],
)
async def test_fenced_json_with_or_without_a_language_tag_is_accepted(
    respx_mock: respx.MockRouter, fenced: str
) -> None:
    content = fenced.replace("{body}", json.dumps(GOOD_DIAGNOSIS))
    respx_mock.post(URL).mock(return_value=chat_reply(content))
    async with httpx.AsyncClient() as http:
        content, _ = await client(http).complete_json("s", "u")
    assert content == GOOD_DIAGNOSIS


async def test_a_400_then_a_server_error_keeps_json_mode(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(URL).mock(
        side_effect=[httpx.Response(400), httpx.Response(503), chat_reply(GOOD_DIAGNOSIS)]
    )
    async with httpx.AsyncClient() as http:
        await client(http).diagnose("s", "u")
    bodies = sent_bodies(route)
    assert "response_format" in bodies[0]
    assert "response_format" not in bodies[1]
    assert "response_format" in bodies[2], "a 503 did not show that response_format was the problem"


MODELS_URL = f"{LLM_URL}/models"


async def test_ping_proves_the_key_on_the_models_endpoint(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.get(MODELS_URL).mock(return_value=httpx.Response(200, json={"data": []}))
    async with httpx.AsyncClient() as http:
        assert await client(http, base_url=f"{LLM_URL}/").ping() == "reachable, key accepted"
    assert route.calls[0].request.headers["authorization"] == f"Bearer {FAKE_LLM_KEY}"


@pytest.mark.parametrize(
    ("response", "outcome"),
    [
        (httpx.Response(404), "reachable (no /models endpoint)"),
        (httpx.Response(401), LLMError("invalid LLM API key (401)")),
        (httpx.Response(403), LLMError("LLM API key lacks permission for this model (403)")),
        (httpx.Response(500), LLMError("LLM API answered HTTP 500")),
        (httpx.Response(402), LLMError("LLM API answered HTTP 402")),
        (httpx.ConnectError("refused"), LLMError("LLM unreachable (ConnectError)")),
    ],
)
async def test_ping_says_in_plain_words_what_is_wrong(
    respx_mock: respx.MockRouter, response: httpx.Response | Exception, outcome: str | LLMError
) -> None:
    if isinstance(response, Exception):
        respx_mock.get(MODELS_URL).mock(side_effect=response)
    else:
        respx_mock.get(MODELS_URL).mock(return_value=response)
    async with httpx.AsyncClient() as http:
        if isinstance(outcome, str):
            assert await client(http).ping() == outcome
            return
        with pytest.raises(LLMError) as raised:
            await client(http).ping()
    assert str(raised.value) == str(outcome)


async def test_ping_without_a_key_sends_nothing(respx_mock: respx.MockRouter) -> None:
    async with httpx.AsyncClient() as http:
        with pytest.raises(LLMError, match=r"^no LLM API key configured$"):
            await client(http, api_key="").ping()
    assert not respx_mock.calls


async def test_the_base_url_is_kept_whole_up_to_its_last_character(
    respx_mock: respx.MockRouter,
) -> None:
    base = "http://llm.test/proxyX"
    chat = respx_mock.post(f"{base}/chat/completions").mock(return_value=chat_reply(GOOD_DIAGNOSIS))
    models = respx_mock.get(f"{base}/models").mock(return_value=httpx.Response(200))
    async with httpx.AsyncClient() as http:
        llm = client(http, base_url=f"{base}/")
        await llm.diagnose("s", "u")
        await llm.ping()
    assert chat.call_count == 1 and models.call_count == 1


def requests(metrics: Metrics, outcome: str) -> float:
    labels = {"model": "deepseek-chat", "outcome": outcome}
    return metrics.registry.get_sample_value("alert_enricher_llm_requests_total", labels) or 0.0


async def test_an_answer_carries_the_tokens_the_server_counted(
    respx_mock: respx.MockRouter,
) -> None:
    respx_mock.post(URL).mock(return_value=chat_reply(GOOD_DIAGNOSIS, usage=(1200, 300)))
    async with httpx.AsyncClient() as http:
        answer = await client(http).diagnose("s", "u")
    assert answer.usage == Usage(1200, 300, estimated=False)


async def test_a_reply_without_usage_is_estimated_from_its_text(
    respx_mock: respx.MockRouter,
) -> None:
    respx_mock.post(URL).mock(return_value=chat_reply(GOOD_DIAGNOSIS))
    async with httpx.AsyncClient() as http:
        answer = await client(http).diagnose("s" * 400, "u" * 400)
    reply_bytes = len(json.dumps(GOOD_DIAGNOSIS).encode())
    assert answer.usage == Usage(200, -(-reply_bytes // 4), estimated=True)


async def test_a_reply_that_is_not_the_json_asked_for_still_counts_its_tokens(
    respx_mock: respx.MockRouter,
) -> None:
    respx_mock.post(URL).mock(return_value=chat_reply("I think the API is down.", usage=(900, 40)))
    async with httpx.AsyncClient() as http:
        with pytest.raises(LLMError) as raised:
            await client(http).diagnose("s", "u")
    assert (raised.value.reason, raised.value.usage) == ("bad_json", Usage(900, 40))


async def test_an_incomplete_diagnosis_counts_its_tokens_and_says_incomplete(
    respx_mock: respx.MockRouter,
) -> None:
    respx_mock.post(URL).mock(return_value=chat_reply({"diagnosis": "x"}, usage=(900, 10)))
    async with httpx.AsyncClient() as http:
        with pytest.raises(LLMError) as raised:
            await client(http).diagnose("s", "u")
    assert (raised.value.reason, raised.value.usage) == ("incomplete", Usage(900, 10))


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (httpx.Response(401), "refused"),
        (httpx.Response(418), "http_error"),
        (httpx.Response(503), "server_error"),
        (httpx.Response(429), "rate_limited"),
        (httpx.ConnectError("refused"), "unreachable"),
        (httpx.ReadTimeout("slow"), "timeout"),
        (httpx.Response(200, text="<html>"), "bad_json"),
        (httpx.Response(200, json={"choices": []}), "bad_json"),
        (chat_reply("[1, 2]"), "bad_json"),
        (httpx.Response(200, json={"choices": [{"message": {"content": None}}]}), "bad_json"),
    ],
)
async def test_every_failure_has_a_reason_code_for_the_fallback_metric(
    respx_mock: respx.MockRouter, reply: httpx.Response | Exception, reason: str
) -> None:
    respx_mock.post(URL).mock(side_effect=[reply])
    async with httpx.AsyncClient() as http:
        with pytest.raises(LLMError) as raised:
            await client(http, max_attempts=1).diagnose("s", "u")
    assert raised.value.reason == reason


async def test_no_key_and_the_total_deadline_have_reason_codes_too(
    respx_mock: respx.MockRouter,
) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return chat_reply(GOOD_DIAGNOSIS)

    respx_mock.post(URL).mock(side_effect=slow)
    async with httpx.AsyncClient() as http:
        with pytest.raises(LLMError) as no_key:
            await client(http, api_key=None).diagnose("s", "u")
        with pytest.raises(LLMError) as late:
            await client(http, timeout=0.2).diagnose("s", "u")
    assert (no_key.value.reason, late.value.reason) == ("no_key", "timeout")


async def test_every_request_is_counted_by_model_and_outcome(
    respx_mock: respx.MockRouter,
) -> None:
    respx_mock.post(URL).mock(
        side_effect=[httpx.Response(429), httpx.Response(503), chat_reply(GOOD_DIAGNOSIS)]
    )
    metrics = Metrics()
    async with httpx.AsyncClient() as http:
        await client(http, metrics=metrics).diagnose("s", "u")
    counted = {o: requests(metrics, o) for o in ("rate_limited", "server_error", "ok")}
    assert counted == {"rate_limited": 1, "server_error": 1, "ok": 1}


async def test_timeouts_unreachable_servers_and_json_mode_refusals_are_counted_apart(
    respx_mock: respx.MockRouter,
) -> None:
    respx_mock.post(URL).mock(
        side_effect=[
            httpx.ReadTimeout("slow"),
            httpx.ConnectError("refused"),
            httpx.Response(400),
            chat_reply(GOOD_DIAGNOSIS),
        ]
    )
    metrics = Metrics()
    async with httpx.AsyncClient() as http:
        await client(http, metrics=metrics, max_attempts=3).diagnose("s", "u")
    counted = {
        o: requests(metrics, o) for o in ("timeout", "unreachable", "rejected_json_mode", "ok")
    }
    assert counted == {"timeout": 1, "unreachable": 1, "rejected_json_mode": 1, "ok": 1}


async def test_a_reply_without_usage_or_text_is_estimated_as_no_completion(
    respx_mock: respx.MockRouter,
) -> None:
    body = {"choices": [{"message": {"role": "assistant", "content": None}}]}
    respx_mock.post(URL).mock(return_value=httpx.Response(200, json=body))
    async with httpx.AsyncClient() as http:
        with pytest.raises(LLMError) as raised:
            await client(http).diagnose("s" * 40, "u" * 40)
    assert raised.value.usage == Usage(20, 0, estimated=True)


def test_the_wait_falls_back_to_backoff_for_an_error_that_names_no_retry_after() -> None:
    from concurrent.futures import Future  # noqa: PLC0415
    from types import SimpleNamespace  # noqa: PLC0415

    from tenacity import wait_fixed  # noqa: PLC0415

    from app.llm_retry import wait_retry_after  # noqa: PLC0415

    failed: Future[None] = Future()
    failed.set_exception(ValueError("no Retry-After here"))
    state = SimpleNamespace(outcome=failed)
    assert wait_retry_after(wait_fixed(3))(state) == 3  # type: ignore[arg-type]
