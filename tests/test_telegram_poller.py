"""Silences from Telegram (issue 13, part 2): the buttons under a page, one poller of getUpdates
among replicas (a role in the store), taps from allowed users only, and what a tap does."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from telegram import Bot

from app.alertmanager import AlertmanagerClient
from app.notifiers.telegram import TelegramNotifier, silence_keyboard
from app.notifiers.telegram_http import AiohttpRequest
from app.silencing import Silencer
from app.store import SQLiteStore
from app.telegram_poller import REFUSAL, ROLE, TelegramPoller
from tests.fakes import fixture_text, sample_notification
from tests.loopback import FakeTelegram
from tests.test_alertmanager import FakeAlertmanager

AM = "http://am.example:9093"
CHAT = "-100123"
ALLOWED = 1001
FIRING = fixture_text("alertmanager-0.25-firing_apidown_binance.json")


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    server = await FakeTelegram().start()
    yield server
    await server.stop()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = await SQLiteStore.open(f"sqlite:///{tmp_path}/s.db")
    await opened.accept("k1", "g1", FIRING, 600)  # notification 1: the page the buttons are under
    yield opened
    await opened.close()


@pytest.fixture
async def pollers(
    telegram: FakeTelegram, store: SQLiteStore
) -> AsyncIterator[Callable[..., TelegramPoller]]:
    made: list[TelegramPoller] = []
    http = httpx.AsyncClient()

    def make(*, lease: float = 3.0, **options: Any) -> TelegramPoller:
        silencer = Silencer(store, AlertmanagerClient(http, AM))
        options = {"poll_seconds": 1, "retry_seconds": 0.1} | options
        poller = TelegramPoller(
            telegram.token,
            telegram.api_url,
            store,
            silencer,
            chat_id=CHAT,
            allowed=frozenset({ALLOWED}),
            lease_seconds=lease,
            **options,
        )
        made.append(poller)
        return poller

    yield make
    for poller in made:
        await poller.stop()
    await http.aclose()


async def until(check: Callable[[], Any], timeout: float = 10) -> Any:
    async with asyncio.timeout(timeout):
        while not (result := check()):
            await asyncio.sleep(0.02)
    return result


# The buttons


def test_a_page_the_store_knows_gets_three_silence_buttons_and_follow_ups_none() -> None:
    keyboard = silence_keyboard(sample_notification(notification_id=42))
    assert keyboard is not None
    [row] = keyboard.inline_keyboard
    assert [(b.text, b.callback_data) for b in row] == [
        ("🔕 Silence 1h", "silence:42:1"),
        ("🔕 Silence 4h", "silence:42:4"),
        ("🔕 Silence 24h", "silence:42:24"),
    ]
    resolved = sample_notification("alertmanager-0.25-resolved_apidown_binance.json")
    assert silence_keyboard(resolved) is None
    assert silence_keyboard(sample_notification(kind="repeat")) is None
    assert silence_keyboard(sample_notification(kind="escalation", notification_id=42)) is not None


async def test_the_buttons_go_under_the_first_part_and_survive_the_diagnosis_edit(
    telegram: FakeTelegram,
) -> None:
    from app.notifiers.base import Progress, Sent  # noqa: PLC0415

    bot = Bot(telegram.token, base_url=telegram.api_url, request=AiohttpRequest())
    notifier = TelegramNotifier(bot, CHAT, buttons=True)
    try:
        steps: dict[str, str | None] = {}

        async def record(step: str, ref: str | None) -> None:
            steps[step] = ref

        n = sample_notification(notification_id=42)
        ref = await notifier.send(n, None, Progress(record=record))
        first = telegram.sent[0]
        assert json.loads(first["reply_markup"])["inline_keyboard"][0][0]["callback_data"] == (
            "silence:42:1"
        )
        edited = n.model_copy(update={"history": "2nd time in 7 days"})
        await notifier.edit(edited, Sent(ref, steps))
        assert json.loads(telegram.edits[-1]["reply_markup"]) == json.loads(first["reply_markup"])
    finally:
        await notifier.close()


# Taps


async def test_an_allowed_tap_silences_answers_and_replies_with_an_expire_button(
    telegram: FakeTelegram, pollers, respx_mock: respx.MockRouter
) -> None:
    am = FakeAlertmanager(respx_mock)
    pollers().start()
    telegram.tap("silence:1:4", message_id=100, user_id=ALLOWED, username="ana")
    [reply] = await until(lambda: telegram.sent)
    [made] = am.silences
    assert {m["name"]: m["value"] for m in made["matchers"]}["exchange"] == "binance"
    assert made["createdBy"] == "telegram:ana (1001)"
    assert f"Telegram message {CHAT}/100" in made["comment"]
    assert reply["reply_to"] == 100 and "🔕 @ana silenced" in reply["visible"]
    assert made["id"] in reply["visible"] and "for 4h, until" in reply["visible"]
    [answer] = telegram.answers
    assert answer["callback_query_id"] == "cq-1" and answer["text"] == "Silenced for 4h"
    [[expire]] = json.loads(reply["reply_markup"])["inline_keyboard"]
    assert expire["callback_data"] == f"expire:{made['id']}"

    route = respx_mock.delete(f"{AM}/api/v2/silence/{made['id']}").mock(
        return_value=httpx.Response(200)
    )
    telegram.tap(expire["callback_data"], message_id=reply["message_id"], user_id=ALLOWED)
    await until(lambda: len(telegram.sent) == 2)
    assert route.called and "expired silence" in telegram.sent[1]["visible"]


@pytest.mark.parametrize(
    ("user_id", "chat_id"), [(666, int(CHAT)), (ALLOWED, -100999)], ids=["stranger", "other chat"]
)
async def test_a_tap_by_anyone_else_or_elsewhere_is_refused_politely_and_makes_nothing(
    telegram: FakeTelegram, pollers, respx_mock: respx.MockRouter, user_id: int, chat_id: int
) -> None:
    am = FakeAlertmanager(respx_mock)
    pollers().start()
    telegram.tap("silence:1:1", message_id=100, user_id=user_id, chat_id=chat_id)
    [answer] = await until(lambda: telegram.answers)
    assert answer["text"] == REFUSAL and answer["show_alert"] in (True, "true")
    assert not am.listing.called and not am.posting.called and not telegram.sent


async def test_a_tap_the_service_cannot_do_is_answered_with_why(
    telegram: FakeTelegram, pollers, respx_mock: respx.MockRouter
) -> None:
    FakeAlertmanager(respx_mock)
    pollers().start()
    telegram.tap("silence:99:1", message_id=100, user_id=ALLOWED)
    [answer] = await until(lambda: telegram.answers)
    assert answer["text"].startswith("Not done: that alert is no longer in the store")


# One poller among replicas


async def test_one_replica_polls_and_another_takes_over_when_it_stops(
    telegram: FakeTelegram, pollers, respx_mock: respx.MockRouter
) -> None:
    FakeAlertmanager(respx_mock)
    first, second = pollers(), pollers()
    first.start()
    await until(lambda: first.polling)
    second.start()
    await asyncio.sleep(1.5)  # several polls of the holder and tries of the other
    assert first.polling and not second.polling
    assert telegram.conflicts == 0, "never two getUpdates at once"
    await first.stop()
    await until(lambda: second.polling, timeout=5)  # dropped: taken at the other's next try
    telegram.tap("silence:1:1", message_id=100, user_id=ALLOWED)
    await until(lambda: telegram.sent)


async def test_a_dead_pollers_role_is_taken_once_its_lease_runs_out(
    telegram: FakeTelegram, store: SQLiteStore, pollers
) -> None:
    assert await store.hold_role(ROLE, "a-replica-that-died", 1.0)
    poller = pollers()
    poller.start()
    await asyncio.sleep(0.5)
    assert not poller.polling, "the lease still runs"
    await until(lambda: poller.polling, timeout=5)


async def test_a_bot_with_a_webhook_stops_polling_with_one_error(
    telegram: FakeTelegram, store: SQLiteStore, pollers, caplog: pytest.LogCaptureFixture
) -> None:
    telegram.webhook_set = True
    poller = pollers()
    with caplog.at_level(logging.ERROR, logger="app.telegram_poller"):
        poller.start()
        await until(lambda: telegram.conflicts)
        await asyncio.sleep(0.5)
    assert telegram.conflicts == 1 and not poller.polling
    assert "delete the webhook" in caplog.text
    assert await store.hold_role(ROLE, "another", 3.0), "the role is given up"


async def test_an_unexpected_error_handling_a_tap_does_not_end_polling(
    telegram: FakeTelegram, pollers, respx_mock: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    FakeAlertmanager(respx_mock)
    poller = pollers()
    original = poller.handle
    calls = []

    async def flaky(update: Any) -> None:
        calls.append(update.update_id)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        await original(update)

    monkeypatch.setattr(poller, "handle", flaky)
    poller.start()
    telegram.tap("silence:1:1", message_id=100, user_id=ALLOWED)
    await until(lambda: calls)
    telegram.tap("silence:1:1", message_id=100, user_id=ALLOWED)
    await until(lambda: telegram.sent)
