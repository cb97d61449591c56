"""Page first, enrich after: through the real app, store, workers and LLM lane, to the console."""

import asyncio
import time

import pytest
import respx

from tests.fakes import GOOD_DIAGNOSIS, LLM_URL, PROMETHEUS_URL, chat_reply, fixture_text, matrix
from tests.test_integration import wait_for_output

FIRING = fixture_text("alertmanager-0.25-firing_apidown_binance.json")
RESOLVED = fixture_text("alertmanager-0.25-resolved_apidown_binance.json")
OTHER_GROUP = fixture_text("alertmanager-0.25-firing_ratelimitexhausted_okx.json")
PRELIMINARY = "rule-based, preliminary: AI diagnosis in progress"
EDITED = "replaces the earlier message"


@pytest.fixture(autouse=True)
def prometheus(respx_mock: respx.MockRouter) -> respx.Route:
    labels = {"exchange": "binance", "instance": "127.0.0.1:19100", "job": "crypto-api-monitor"}
    return respx_mock.post(f"{PROMETHEUS_URL}/api/v1/query_range").mock(
        return_value=matrix((labels, [1, 1, 0]))
    )


def slow_model(respx_mock: respx.MockRouter, seconds: float) -> respx.Route:
    async def answer(request: object) -> object:
        await asyncio.sleep(seconds)
        return chat_reply(GOOD_DIAGNOSIS)

    return respx_mock.post(f"{LLM_URL}/chat/completions").mock(side_effect=answer)


def sample(app, name: str, **labels: str) -> float:
    return app.state.services.metrics.registry.get_sample_value(name, labels) or 0.0


async def until(condition, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def test_a_model_that_answers_in_time_is_in_the_first_and_only_message(
    make_settings, running_app, respx_mock, capsys
) -> None:
    slow_model(respx_mock, 0.05)
    app, client = await running_app(make_settings(llm_api_key="fake-llm-key"))
    await client.post("/alerts", content=FIRING)
    out = await wait_for_output(capsys, "Source:")
    await asyncio.sleep(0.3)
    out += capsys.readouterr().out
    assert "Source: model deepseek-chat" in out and GOOD_DIAGNOSIS["diagnosis"] in out
    assert PRELIMINARY not in out and EDITED not in out
    assert out.count("FIRING: APIDown") == 1
    assert sample(app, "alert_enricher_time_to_page_seconds_count", severity="critical") == 1


async def test_a_slow_model_pages_with_the_rules_first_then_edits_in_its_diagnosis(
    make_settings, running_app, respx_mock, capsys
) -> None:
    llm = slow_model(respx_mock, 1.5)
    app, client = await running_app(
        make_settings(llm_api_key="fake-llm-key", page_within_seconds=0.3)
    )
    posted = time.monotonic()
    await client.post("/alerts", content=FIRING)
    first = await wait_for_output(capsys, "Source:")
    paged_after = time.monotonic() - posted
    assert PRELIMINARY in first and GOOD_DIAGNOSIS["diagnosis"] not in first
    assert "The binance API is not answering health checks" in first, "the rules' diagnosis"
    assert paged_after < 1.2, f"paged {paged_after:.2f}s after the POST, before the model answered"

    edited = await wait_for_output(capsys, "Source: model deepseek-chat")
    assert EDITED in edited and GOOD_DIAGNOSIS["diagnosis"] in edited
    await until(
        lambda: sample(app, "alert_enricher_notifications_processed_total", outcome="done") == 2
    )
    assert llm.call_count == 1
    assert (
        sample(app, "alert_enricher_diagnosis_edits_total", channel="console", outcome="edited")
        == 1
    )
    assert (
        sample(app, "alert_enricher_time_to_page_seconds_bucket", severity="critical", le="1.0")
        == 1
    )


async def test_a_page_behind_a_busy_lane_goes_at_once_and_its_diagnosis_follows_as_an_edit(
    make_settings, running_app, respx_mock, capsys
) -> None:
    asked: list[float] = []

    async def answer(request: object) -> object:
        asked.append(time.monotonic())
        await asyncio.sleep(1.0)
        return chat_reply(GOOD_DIAGNOSIS)

    llm = respx_mock.post(f"{LLM_URL}/chat/completions").mock(side_effect=answer)
    app, client = await running_app(
        make_settings(llm_api_key="fake-llm-key", page_within_seconds=3, llm_concurrency=1)
    )
    await client.post("/alerts", content=FIRING)
    await until(lambda: len(asked) == 1)  # its diagnosis holds the lane's one slot, unanswered
    posted = time.monotonic()
    await client.post("/alerts", content=OTHER_GROUP)
    first = await wait_for_output(capsys, "FIRING: RateLimitExhausted")
    paged_after = time.monotonic() - posted
    assert paged_after < 1.0, f"paged {paged_after:.2f}s after the POST: it waited for the lane"
    await until(
        lambda: (
            sample(app, "alert_enricher_diagnosis_edits_total", channel="console", outcome="edited")
            == 1
        ),
        timeout=6,
    )
    assert llm.call_count == 2, "the page that went at once still had its diagnosis asked"
    out = first + capsys.readouterr().out
    assert out.count(EDITED) == 1 and out.count(PRELIMINARY) == 1


async def test_a_resolve_that_arrives_before_the_model_answers_is_not_edited_back_to_firing(
    make_settings, running_app, respx_mock, capsys
) -> None:
    llm = slow_model(respx_mock, 1.0)
    app, client = await running_app(
        make_settings(llm_api_key="fake-llm-key", page_within_seconds=0.1)
    )
    await client.post("/alerts", content=FIRING)
    assert PRELIMINARY in await wait_for_output(capsys, "Source:")
    await client.post("/alerts", content=RESOLVED)
    await wait_for_output(capsys, "RESOLVED")
    await until(
        lambda: (
            llm.call_count == 1
            and sample(
                app, "alert_enricher_diagnosis_edits_total", channel="console", outcome="superseded"
            )
            == 1
        ),
        timeout=5,
    )
    await asyncio.sleep(0.2)
    assert EDITED not in capsys.readouterr().out
    assert (
        sample(app, "alert_enricher_diagnosis_edits_total", channel="console", outcome="edited")
        == 0
    )


async def test_a_diagnosis_queued_past_llm_max_queue_seconds_is_not_asked_of_the_model(
    make_settings, running_app, respx_mock, capsys
) -> None:
    llm = slow_model(respx_mock, 0)
    app, client = await running_app(
        make_settings(
            llm_api_key="fake-llm-key", page_within_seconds=0, llm_max_queue_seconds=0.001
        )
    )
    await client.post("/alerts", content=FIRING)
    out = await wait_for_output(capsys, "AI diagnosis skipped")
    first, edited = out.split(EDITED)
    assert PRELIMINARY in first and "AI diagnosis skipped" not in first
    assert "LLM_MAX_QUEUE_SECONDS" in edited and PRELIMINARY not in edited
    assert llm.call_count == 0
    assert sample(app, "alert_enricher_llm_dropped_total", reason="queue_expired") == 1


async def test_without_a_model_key_the_rules_are_final_at_once_with_no_lane(
    make_settings, running_app, capsys
) -> None:
    app, client = await running_app(make_settings(page_within_seconds=0))
    await client.post("/alerts", content=FIRING)
    out = await wait_for_output(capsys, "Source:")
    assert "rule-based fallback: no LLM API key configured" in out and PRELIMINARY not in out
    assert app.state.services.lane is None


async def test_the_preliminary_page_and_its_edit_both_follow_and_name_the_teams_runbook(
    make_settings, running_app, respx_mock, capsys, tmp_path
) -> None:
    (tmp_path / "APIDown.md").write_text("# APIDown\n\n## First steps\n1. Fail over to api1.\n")
    slow_model(respx_mock, 1.0)
    _, client = await running_app(
        make_settings(llm_api_key="fake-llm-key", page_within_seconds=0.2, runbooks_dir=tmp_path)
    )
    await client.post("/alerts", content=FIRING)
    first = await wait_for_output(capsys, "Source:")
    assert f"Source: {PRELIMINARY}; runbook APIDown.md" in first
    assert "1. Fail over to api1." in first
    edited = await wait_for_output(capsys, "Source: model deepseek-chat")
    assert "; runbook APIDown.md" in edited
