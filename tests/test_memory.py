"""Incident memory: how often a group fired in the last 7 days, how long it lasted and what was
diagnosed last, in one line of the message and as evidence in the prompt; never holding a page."""

from __future__ import annotations

import asyncio
import json

import pytest
import respx

from app.language import ENGLISH
from app.memory import LOOKUP_SECONDS, WINDOW_SECONDS, Memory, minutes, recall
from app.notifiers.console import render as console_render
from app.notifiers.slack_blocks import render_blocks
from app.notifiers.telegram import pack
from app.notifiers.telegram import render as telegram_render
from app.store.base import IncidentHistory, StoreError
from tests.fakes import (
    GOOD_DIAGNOSIS,
    LLM_URL,
    PROMETHEUS_URL,
    chat_reply,
    fixture_text,
    matrix,
    sample_notification,
)
from tests.loopback import all_text
from tests.test_integration import wait_for_output

FIRING = fixture_text("alertmanager-0.25-firing_apidown_binance.json")
RESOLVED = fixture_text("alertmanager-0.25-resolved_apidown_binance.json")


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (1, "1st"),
        (2, "2nd"),
        (3, "3rd"),
        (4, "4th"),
        (11, "11th"),
        (12, "12th"),
        (13, "13th"),
        (21, "21st"),
        (22, "22nd"),
        (101, "101st"),
        (111, "111th"),
    ],
)
def test_ordinals_read_as_english(n: int, text: str) -> None:
    assert ENGLISH.ordinal(n) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "1s"),
        (42.4, "42s"),
        (60, "1 min"),
        (89, "1 min"),
        (90, "2 min"),
        (540, "9 min"),
        (7199, "120 min"),
        (7200, "2.0 h"),
        (5.5 * 3600, "5.5 h"),
    ],
)
def test_durations_read_in_the_unit_an_engineer_would_say(seconds: float, text: str) -> None:
    assert minutes(seconds) == text


def test_a_group_that_never_ended_an_incident_has_no_memory() -> None:
    assert Memory.of(IncidentHistory([], "stale")) is None


def test_the_line_counts_this_time_and_gives_the_typical_and_range_of_durations() -> None:
    history = IncidentHistory([(0, 240), (1000, 1540), (5000, 5720)], "clock drift")
    memory = Memory.of(history)
    assert memory is not None
    assert memory.line == "4th time in 7 days; usually resolves in ~9 min (4 min to 12 min)"
    assert memory.evidence() == {
        "earlier_incidents_7d": 3,
        "median_minutes_to_resolve": 9.0,
        "last_diagnosis": "clock drift",
    }


def test_one_earlier_incident_gives_no_range_and_a_missing_diagnosis_is_left_out() -> None:
    memory = Memory.of(IncidentHistory([(0, 300)]))
    assert memory is not None
    assert memory.line == "2nd time in 7 days; usually resolves in ~5 min"
    assert "last_diagnosis" not in memory.evidence()


class History:
    def __init__(self, answer: IncidentHistory | Exception | None = None, delay: float = 0) -> None:
        self.answer, self.delay, self.asked = answer, delay, []

    async def incident_history(self, group_id: str, within_seconds: float) -> IncidentHistory:
        self.asked.append((group_id, within_seconds))
        await asyncio.sleep(self.delay)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer or IncidentHistory([])


async def test_recall_asks_the_store_for_the_groups_last_7_days() -> None:
    store = History(IncidentHistory([(0, 60)]))
    memory = await recall(store, "g1")
    assert store.asked == [("g1", WINDOW_SECONDS)] and memory is not None


@pytest.mark.parametrize(
    "store",
    [None, History(StoreError("database is locked")), History(delay=LOOKUP_SECONDS + 1)],
    ids=["no store", "store error", "store too slow"],
)
async def test_a_store_that_cannot_answer_in_a_second_leaves_the_message_without_memory(
    store: History | None,
) -> None:
    started = asyncio.get_running_loop().time()
    assert await recall(store, "g") is None
    assert asyncio.get_running_loop().time() - started < LOOKUP_SECONDS + 0.5


def test_every_channel_shows_the_line_escaped() -> None:
    n = sample_notification().model_copy(update={"history": "2nd time in 7 days <b>&"})
    assert "🕘 2nd time in 7 days <b>&" in console_render(n)
    slack = "\n".join(all_text(render_blocks(n)))
    assert "🕘 2nd time in 7 days &lt;b&gt;&amp;" in slack
    telegram = "\n".join(pack(telegram_render(n)))
    assert "<i>🕘 2nd time in 7 days &lt;b&gt;&amp;</i>" in telegram


async def test_the_second_incident_of_a_group_is_paged_with_its_memory_and_the_llm_hears_of_it(
    make_settings, running_app, respx_mock: respx.MockRouter, capsys
) -> None:
    labels = {"exchange": "binance", "instance": "127.0.0.1:19100", "job": "crypto-api-monitor"}
    respx_mock.post(f"{PROMETHEUS_URL}/api/v1/query_range").mock(
        return_value=matrix((labels, [1, 0]))
    )
    llm = respx_mock.post(f"{LLM_URL}/chat/completions").mock(
        return_value=chat_reply(GOOD_DIAGNOSIS)
    )
    _, client = await running_app(make_settings(llm_api_key="fake-llm-key"))
    await client.post("/alerts", content=FIRING)
    first = await wait_for_output(capsys, "Source:")
    assert "🕘" not in first, "the first time has no memory"
    await client.post("/alerts", content=RESOLVED)
    await wait_for_output(capsys, "RESOLVED")
    second_firing = json.loads(FIRING)
    second_firing["alerts"][0]["startsAt"] = "2026-11-22T03:00:00Z"
    await client.post("/alerts", json=second_firing)
    second = await wait_for_output(capsys, "Source:")
    assert "🕘 2nd time in 7 days; usually resolves in ~" in second
    prompt = json.loads(llm.calls[-1].request.content)["messages"][1]["content"]
    assert '"earlier_incidents_7d":1' in prompt
    assert GOOD_DIAGNOSIS["diagnosis"][:40] in prompt, "last time's diagnosis is evidence"


def test_slack_shows_the_memory_as_a_context_line_before_the_diagnosis() -> None:
    n = sample_notification().model_copy(update={"history": "2nd time in 7 days"})
    blocks = render_blocks(n)
    note = {"type": "context", "elements": [{"type": "mrkdwn", "text": "🕘 2nd time in 7 days"}]}
    assert note in blocks
    divider = blocks.index({"type": "divider"})
    assert blocks.index(note) < divider, "before the diagnosis"
    assert note not in render_blocks(sample_notification())
