"""From POST /alerts to what the console prints, through the real app, store and workers."""

import asyncio

import pytest
import respx

from tests.fakes import GOOD_DIAGNOSIS, LLM_URL, PROMETHEUS_URL, chat_reply, fixture_text, matrix

FIRING = fixture_text("alertmanager-0.25-firing_apidown_binance.json")


async def wait_for_output(capsys, needle: str, timeout: float = 5.0) -> str:
    seen = ""
    async with asyncio.timeout(timeout):
        while needle not in seen:
            await asyncio.sleep(0.02)
            seen += capsys.readouterr().out
    return seen


@pytest.fixture
def prometheus(respx_mock: respx.MockRouter) -> respx.Route:
    labels = {"exchange": "binance", "instance": "127.0.0.1:19100", "job": "crypto-api-monitor"}
    return respx_mock.post(f"{PROMETHEUS_URL}/api/v1/query_range").mock(
        return_value=matrix((labels, [1, 1, 0]))
    )


async def test_posted_alert_is_printed_with_rule_based_diagnosis_without_llm_key(
    make_settings, running_app, prometheus, capsys
) -> None:
    _, client = await running_app(make_settings())
    assert (await client.post("/alerts", content=FIRING)).status_code == 202
    out = await wait_for_output(capsys, "Source:")
    assert "FIRING: APIDown on binance" in out
    assert "rule-based fallback: no LLM API key configured" in out
    assert "now 0   min 0   max 1" in out and "██▁" in out


async def test_posted_alert_is_printed_with_the_models_diagnosis(
    make_settings, running_app, prometheus, respx_mock, capsys
) -> None:
    respx_mock.post(f"{LLM_URL}/chat/completions").mock(return_value=chat_reply(GOOD_DIAGNOSIS))
    _, client = await running_app(make_settings(llm_api_key="fake-llm-key"))
    await client.post("/alerts", content=FIRING)
    out = await wait_for_output(capsys, "Source:")
    assert GOOD_DIAGNOSIS["diagnosis"] in out
    assert "1. Check Binance status page" in out
    assert "Source: model deepseek-chat" in out


async def test_llm_429_then_ok_is_retried_and_the_model_answers(
    make_settings, running_app, prometheus, respx_mock, capsys
) -> None:
    llm = respx_mock.post(f"{LLM_URL}/chat/completions").mock(
        side_effect=[chat_reply("{}", status=429), chat_reply(GOOD_DIAGNOSIS)]
    )
    _, client = await running_app(make_settings(llm_api_key="fake-llm-key"))
    await client.post("/alerts", content=FIRING)
    out = await wait_for_output(capsys, "Source:")
    assert "Source: model deepseek-chat" in out and llm.call_count == 2


async def test_same_payload_twice_is_processed_once(
    make_settings, running_app, prometheus, capsys
) -> None:
    _, client = await running_app(make_settings())
    responses = await asyncio.gather(*(client.post("/alerts", content=FIRING) for _ in range(5)))
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 200, 202]
    out = await wait_for_output(capsys, "Source:")
    await asyncio.sleep(0.3)
    out += capsys.readouterr().out
    assert out.count("FIRING: APIDown") == 1


async def test_resolved_follows_firing_in_order(
    make_settings, running_app, prometheus, capsys
) -> None:
    _, client = await running_app(make_settings())
    await client.post("/alerts", content=FIRING)
    await client.post(
        "/alerts", content=fixture_text("alertmanager-0.25-resolved_apidown_binance.json")
    )
    out = await wait_for_output(capsys, "RESOLVED")
    assert out.index("FIRING: APIDown") < out.index("RESOLVED: APIDown")
    assert "resolved, fired for 6s" in out
