"""Incident memory: how often a group fired in the last 7 days, how long it lasted and what was
diagnosed last, in one line of the message and as evidence in the prompt; never holding a page."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
import respx

from app.incident import Firing, firings_of
from app.language import ENGLISH, VIETNAMESE
from app.memory import LOOKUP_SECONDS, WINDOW_SECONDS, AlertMemory, Memory, minutes, recall
from app.models import Alert, AlertmanagerPayload
from app.notifiers.console import render as console_render
from app.notifiers.slack_blocks import render_blocks
from app.notifiers.telegram import pack
from app.notifiers.telegram import render as telegram_render
from app.store.base import StoreError
from app.store.history import AlertEpisode, IncidentHistory, alert_episodes
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
# The same binance alert 14 minutes later, now grouped by alertname alone with bybit and okx.
GROUP_OF_3 = fixture_text("alertmanager-0.25-firing_apidown_group_of_3.json")
BINANCE = AlertmanagerPayload.model_validate_json(GROUP_OF_3).alerts[0]
FINGERPRINT = "9bf71c1dd3846b64"


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
    def __init__(
        self,
        answer: IncidentHistory | Exception | None = None,
        delay: float = 0,
        episodes: list[AlertEpisode] | None = None,
    ) -> None:
        self.answer, self.delay, self.asked = answer, delay, []
        self.episodes = episodes or []

    async def incident_history(self, group_id: str, within_seconds: float) -> IncidentHistory:
        self.asked.append((group_id, within_seconds))
        await asyncio.sleep(self.delay)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer or IncidentHistory([])

    async def alert_history(self, fingerprint: str, within_seconds: float) -> list[AlertEpisode]:
        self.asked.append((fingerprint, within_seconds))
        return self.episodes


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


def episode(started_min: float, lasted_min: float | None = None) -> AlertEpisode:
    now = BINANCE.starts_at.timestamp() if BINANCE.starts_at else 0
    started = now - started_min * 60
    return AlertEpisode(started, None if lasted_min is None else started + lasted_min * 60)


def test_the_alerts_own_memory_counts_its_earlier_firings_not_this_one() -> None:
    episodes = [episode(300, 4), episode(120, 6), episode(60), episode(0)]
    memory = AlertMemory.of(BINANCE, episodes)
    assert memory == AlertMemory("APIDown", "binance", before=3, typical_seconds=300)
    assert (
        memory.line_in(ENGLISH)
        == "APIDown on binance: 4th time in 7 days; usually resolves in ~5 min"
    )
    assert memory.evidence() == {
        "alert": "APIDown on binance",
        "earlier_firings_7d": 3,
        "median_minutes_to_resolve": 5.0,
    }
    assert AlertMemory.of(BINANCE, [episode(0)]) is None, "its current firing is not a past"
    assert AlertMemory.of(BINANCE, []) is None


def test_an_alert_whose_earlier_firings_never_resolved_in_view_has_a_count_and_no_duration() -> (
    None
):
    memory = AlertMemory.of(BINANCE, [episode(30)])
    assert memory is not None and memory.typical_seconds is None
    assert memory.line_in(ENGLISH) == "APIDown on binance: 2nd time in 7 days"
    assert "median_minutes_to_resolve" not in memory.evidence()


@pytest.mark.parametrize(
    ("labels", "name"),
    [
        ({"exchange": "okx", "instance": "i:1"}, "APIDown on okx"),
        ({"instance": "10.0.0.7:9100", "job": "node"}, "APIDown on 10.0.0.7:9100"),
        ({"job": "node"}, "APIDown on node"),
        ({}, "APIDown"),
    ],
)
def test_the_alerts_target_is_its_exchange_else_its_instance_else_its_job(
    labels: dict[str, str], name: str
) -> None:
    alert = Alert.model_validate(
        {"status": "firing", "labels": {"alertname": "APIDown", **labels}, "fingerprint": "f"}
    )
    memory = AlertMemory.of(alert, [AlertEpisode(0, 60)])
    assert memory is not None and memory.name_in(ENGLISH) == name


def test_label_text_in_the_alerts_name_is_cleaned_and_shortened() -> None:
    alert = Alert.model_validate(
        {"status": "firing", "labels": {"alertname": "A\u202e" + "x" * 200, "exchange": "b\x07"}}
    )
    memory = AlertMemory.of(alert, [AlertEpisode(0)])
    assert memory is not None and memory.target == "b"
    assert "\u202e" not in memory.alertname and len(memory.alertname) == 80


def test_the_line_adds_the_alerts_own_count_only_when_it_differs_from_the_groups() -> None:
    history = IncidentHistory([(0, 240)], "clock drift")
    same = Memory.of(history, AlertMemory("APIDown", "binance", 1, 240))
    assert same is not None and same.line == "2nd time in 7 days; usually resolves in ~4 min"
    differs = Memory.of(history, AlertMemory("APIDown", "binance", 5, 90))
    assert differs is not None
    assert differs.line == (
        "2nd time in 7 days; usually resolves in ~4 min"
        " · APIDown on binance: 6th time in 7 days; usually resolves in ~2 min"
    )
    assert differs.evidence()["this_alert"]["earlier_firings_7d"] == 5


def test_a_group_seen_for_the_first_time_still_remembers_its_alerts_earlier_firings() -> None:
    memory = Memory.of(
        IncidentHistory([], "a diagnosis of an incident still open"),
        AlertMemory("APIDown", "binance", 2, 60),
    )
    assert memory is not None
    assert memory.line == "APIDown on binance: 3rd time in 7 days; usually resolves in ~1 min"
    assert (
        memory.line_in(VIETNAMESE)
        == "APIDown trên binance: lần thứ 3 trong 7 ngày; thường hết sau ~1 min"
    )
    assert memory.evidence() == {
        "this_alert": {
            "alert": "APIDown on binance",
            "earlier_firings_7d": 2,
            "median_minutes_to_resolve": 1.0,
        }
    }


async def test_recall_asks_for_the_lead_alerts_firings_by_fingerprint_within_the_same_second() -> (
    None
):
    store = History(IncidentHistory([]), episodes=[episode(60, 2), episode(0)])
    memory = await recall(store, "g1", BINANCE)
    assert store.asked == [("g1", WINDOW_SECONDS), (FINGERPRINT, WINDOW_SECONDS)]
    assert memory is not None and memory.alert is not None and memory.alert.before == 1
    assert await recall(History(IncidentHistory([]), episodes=[episode(0)]), "g1", BINANCE) is None


async def test_an_alert_without_a_fingerprint_is_not_searched_for() -> None:
    store = History(IncidentHistory([(0, 60)]), episodes=[AlertEpisode(0, 60)])
    alert = BINANCE.model_copy(update={"fingerprint": ""})
    memory = await recall(store, "g1", alert)
    assert store.asked == [("g1", WINDOW_SECONDS)]
    assert memory is not None and memory.alert is None


def firing_json(
    fingerprint: str, starts: str, status: str = "firing", ends: str = "0001-01-01T00:00:00Z"
) -> dict:
    return {
        "status": status,
        "labels": {"alertname": "APIDown"},
        "startsAt": starts,
        "endsAt": ends,
        "fingerprint": fingerprint,
    }


def test_a_payloads_firings_are_one_per_start_with_the_end_once_it_says_resolved() -> None:
    start = datetime(2026, 11, 21, 10, tzinfo=UTC).timestamp()
    ended = firing_json("f", "2026-11-21T10:00:00Z", "resolved", "2026-11-21T10:05:00Z")
    alerts = [
        firing_json("f", "2026-11-21T10:00:00Z"),
        firing_json("other", "2026-11-21T09:00:00Z", "resolved", "2026-11-21T09:30:00Z"),
        ended,
        firing_json("f", "2026-11-21T10:00:00Z"),  # named again, still resolved
        firing_json("f", "2026-11-21T11:00:00.123456789Z"),
        firing_json("f", "0001-01-01T00:00:00Z"),  # no start
        firing_json("", "2026-11-21T10:00:00Z"),  # no fingerprint
        firing_json("f" * 65, "2026-11-21T10:00:00Z"),  # not Alertmanager's:
        firing_json("f\x00", "2026-11-21T10:00:00Z"),
        firing_json("<b>f</b>", "2026-11-21T10:00:00Z"),
    ]
    # In key order, the order concurrent writers lock the rows in.
    assert firings_of([Alert.model_validate(a) for a in alerts]) == (
        Firing("f", start, start + 300),
        Firing("f", start + 3600.123456, None),
        Firing("other", start - 3600, start - 1800),
    )


def test_an_alerts_episodes_are_the_stores_rows_oldest_first() -> None:
    assert alert_episodes([(20.0, None), (10.0, 15.0)]) == [
        AlertEpisode(10.0, 15.0),
        AlertEpisode(20.0, None),
    ]


async def test_an_alert_that_fired_in_another_group_before_is_paged_with_its_own_count(
    make_settings, running_app, respx_mock: respx.MockRouter, capsys
) -> None:
    respx_mock.post(f"{PROMETHEUS_URL}/api/v1/query_range").mock(return_value=matrix())
    llm = respx_mock.post(f"{LLM_URL}/chat/completions").mock(
        return_value=chat_reply(GOOD_DIAGNOSIS)
    )
    _, client = await running_app(make_settings(llm_api_key="fake-llm-key"))
    await client.post("/alerts", content=FIRING)
    await wait_for_output(capsys, "Source:")
    await client.post("/alerts", content=RESOLVED)
    await wait_for_output(capsys, "RESOLVED")
    await client.post("/alerts", content=GROUP_OF_3)  # grouped by alertname: a group new to us
    message = await wait_for_output(capsys, "Source:")
    assert "🕘 APIDown on binance: 2nd time in 7 days; usually resolves in ~6s" in message
    prompt = json.loads(llm.calls[-1].request.content)["messages"][1]["content"]
    assert '"this_alert":{"alert":"APIDown on binance","earlier_firings_7d":1' in prompt
