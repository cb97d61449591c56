"""Silences from Slack (issue 13, part 2): the buttons, what a click may ask for, the signed
endpoint, and what it does in Alertmanager and in the thread."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import respx

from app.alertmanager import AlertmanagerClient, Matcher, Silence
from app.models import AlertmanagerPayload
from app.notifiers.slack_blocks import MAX_BLOCKS, message
from app.silencing import (
    DURATIONS_HOURS,
    MAX_VALUE_CHARS,
    ExpireAsk,
    SilenceAsk,
    SilenceError,
    Silencer,
    expire_value,
    matchers_for,
    parse,
    silence_value,
)
from app.slack_clicks import click_of, silenced
from app.slack_signature import sign
from app.store.base import NotificationRecord
from tests.fakes import fixture_text, sample_notification
from tests.loopback import FAKE_SLACK_TOKEN, FakeSlack, all_text
from tests.test_alertmanager import ID, SILENCES, FakeAlertmanager

AM = "http://am.example:9093"
SECRET = "fake-slack-signing-secret"
NOW = datetime(2026, 11, 21, 10, 30, tzinfo=UTC)
FIRING = fixture_text("alertmanager-0.25-firing_apidown_binance.json")
GROUP_OF_3 = fixture_text("alertmanager-0.25-firing_apidown_group_of_3.json")
BINANCE_LABELS = {
    "alertname": "APIDown",
    "exchange": "binance",
    "instance": "127.0.0.1:19100",
    "job": "crypto-api-monitor",
    "severity": "critical",
}


# What a button may ask


@pytest.mark.parametrize(
    ("value", "ask"),
    [
        ("silence:42:1", SilenceAsk(42, 1)),
        ("silence:42:24", SilenceAsk(42, 24)),
        (f"expire:{ID.upper()}", ExpireAsk(ID)),
    ],
)
def test_a_button_value_names_a_notification_and_a_duration_or_a_silence(
    value: str, ask: object
) -> None:
    assert parse(value) == ask


@pytest.mark.parametrize(
    "value",
    [
        "silence:42:2",  # not a duration offered
        "silence:0:1",
        "silence:-1:1",
        "silence:42:1:x",
        "silence:42:1\n",
        'silence:42:1", "matchers": []',
        "expire:../../api/v2/status",
        "expire:" + "a" * 36,
        "",
        None,
        42,
    ],
)
def test_anything_else_is_refused(value: object) -> None:
    with pytest.raises(SilenceError, match="not a button of this service"):
        parse(value)


def test_every_value_fits_telegrams_64_bytes() -> None:
    assert len(silence_value(10**18 - 1, max(DURATIONS_HOURS))) <= MAX_VALUE_CHARS
    assert len(expire_value(ID)) <= MAX_VALUE_CHARS


def test_one_firing_alert_is_silenced_by_its_labels_a_group_by_its_group_labels() -> None:
    one = AlertmanagerPayload.model_validate_json(FIRING)
    assert matchers_for(one) == [Matcher(k, v) for k, v in sorted(BINANCE_LABELS.items())]
    group = AlertmanagerPayload.model_validate_json(GROUP_OF_3)
    assert matchers_for(group) == [Matcher("alertname", "APIDown")]
    everything = group.model_copy(update={"group_labels": {}})
    assert matchers_for(everything) == [
        Matcher(k, v) for k, v in sorted(group.common_labels.items())
    ]


# The silencer, against a stateful Alertmanager over respx


class Records:
    def __init__(self, payload: str | None = FIRING) -> None:
        self.payload = payload

    async def notification(self, notification_id: int) -> NotificationRecord | None:
        if self.payload is None:
            return None
        return NotificationRecord(
            notification_id, "alert", "g", "done", 1, 0.0, 1.0, None, self.payload, None
        )


def silencer(http: httpx.AsyncClient, records: Records | None = None) -> Silencer:
    alertmanager = AlertmanagerClient(http, AM, now=lambda: NOW)
    return Silencer(records or Records(), alertmanager, now=lambda: NOW)


async def test_a_silence_matches_the_stored_alert_for_the_hours_asked(
    respx_mock: respx.MockRouter,
) -> None:
    fake = FakeAlertmanager(respx_mock)
    async with httpx.AsyncClient() as http:
        made = await silencer(http).silence(SilenceAsk(7, 4), "slack:ana (U1)", "Slack C1/1.2")
    (posted,) = fake.silences
    assert {m["name"]: m["value"] for m in posted["matchers"]} == BINANCE_LABELS
    assert not any(m["isRegex"] for m in posted["matchers"])
    assert made.ends_at == NOW + timedelta(hours=4) and made.created
    assert posted["createdBy"] == "slack:ana (U1)"
    assert posted["comment"] == "Silenced from Slack C1/1.2 (alert-enricher notification 7)"


async def test_a_double_click_finds_the_silence_the_first_made(
    respx_mock: respx.MockRouter,
) -> None:
    fake = FakeAlertmanager(respx_mock)
    async with httpx.AsyncClient() as http:
        first = await silencer(http).silence(SilenceAsk(7, 1), "ana", "here")
        again = await silencer(http).silence(SilenceAsk(7, 1), "ana", "here")
    assert len(fake.silences) == 1 and again.id == first.id and not again.created


async def test_an_alert_past_retention_or_an_alertmanager_error_is_said_plainly(
    respx_mock: respx.MockRouter,
) -> None:
    async with httpx.AsyncClient() as http:
        with pytest.raises(SilenceError, match="no longer in the store"):
            await silencer(http, Records(None)).silence(SilenceAsk(7, 1), "ana", "here")
        respx_mock.get(SILENCES).mock(return_value=httpx.Response(503, text="overloaded"))
        with pytest.raises(SilenceError, match=r"Alertmanager did not take the silence.*503"):
            await silencer(http).silence(SilenceAsk(7, 1), "ana", "here")
        respx_mock.delete(f"{AM}/api/v2/silence/{ID}").mock(
            return_value=httpx.Response(404, json={"code": 404, "message": "silence not found"})
        )
        with pytest.raises(SilenceError, match="does not know that silence"):
            await silencer(http).expire(ExpireAsk(ID))


# The buttons


def buttons_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = body["attachments"][0]["blocks"]
    return [e for b in blocks if b["type"] == "actions" for e in b["elements"]]


def test_a_firing_page_has_a_silence_button_per_duration_above_its_footer() -> None:
    n = sample_notification(notification_id=42)
    body = message(n, buttons=True)
    assert [b["value"] for b in buttons_of(body)] == [
        "silence:42:1",
        "silence:42:4",
        "silence:42:24",
    ]
    assert [b["text"]["text"] for b in buttons_of(body)] == [
        "🔕 Silence 1h",
        "🔕 Silence 4h",
        "🔕 Silence 24h",
    ]
    blocks = body["attachments"][0]["blocks"]
    assert blocks[-2]["type"] == "actions" and blocks[-1]["type"] == "context", "footer last"
    assert buttons_of(message(n)) == [], "off without a signing secret"


def test_follow_ups_have_no_buttons_and_no_actions_block() -> None:
    resolved = sample_notification("alertmanager-0.25-resolved_apidown_binance.json")
    repeat = sample_notification(kind="repeat")
    for follow_up in (resolved, repeat):
        blocks = message(follow_up, buttons=True)["attachments"][0]["blocks"]
        # Slack refuses an actions block without elements: none at all, not an empty one.
        assert [b for b in blocks if b["type"] == "actions"] == []


def test_a_page_full_of_blocks_keeps_its_buttons_within_slacks_limit() -> None:
    n = sample_notification(notification_id=1, diagnosis={
        "diagnosis": "x " * 40_000, "impact": "y", "action_items": ["z " * 2000] * 20,
        "rollback_plan": "r", "estimated_recovery_time": "t",
    })  # fmt: skip
    blocks = message(n, buttons=True)["attachments"][0]["blocks"]
    assert len(blocks) <= MAX_BLOCKS and blocks[-2]["type"] == "actions"


# A click


def click_payload(value: str, user: str = "U0FAKE1", ts: str = "1700000000.000001") -> dict:
    return {
        "type": "block_actions",
        "user": {"id": user, "username": "ana", "name": "ana"},
        "channel": {"id": "C0FAKE0001", "name": "alerts"},
        "container": {"type": "message", "message_ts": ts, "channel_id": "C0FAKE0001"},
        "message": {"ts": ts, "text": "🔥 FIRING"},
        "actions": [{"action_id": "silence-4h", "value": value, "type": "button"}],
    }


def test_a_click_names_who_where_and_what() -> None:
    click = click_of(click_payload("silence:1:4"))
    assert click is not None
    assert (click.user_id, click.user_name, click.channel) == ("U0FAKE1", "ana", "C0FAKE0001")
    assert (click.thread_ts, click.value) == ("1700000000.000001", "silence:1:4")
    in_thread = click_payload("silence:1:4") | {
        "message": {"ts": "1700000000.000009", "thread_ts": "1700000000.000001"}
    }
    assert click_of(in_thread).thread_ts == "1700000000.000001"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "payload",
    [
        click_payload("x") | {"type": "view_submission"},
        click_payload("x", user="U1> <!channel"),
        click_payload("x", ts="1700000000.1; rm"),
        click_payload("x") | {"actions": []},
        {"type": "block_actions"},
        ["not", "a", "dict"],
    ],
)
def test_a_payload_not_in_slacks_shape_is_ignored(payload: Any) -> None:
    assert click_of(payload) is None


def test_the_reply_escapes_label_text() -> None:
    silence = Silence(
        ID, (Matcher("exchange", "<!channel> & co"),), NOW, NOW, "ana", "", "active", created=True
    )
    text = silenced("<@U1>", 4, silence)
    assert 'exchange="&lt;!channel&gt; &amp; co"' in text and "<!channel>" not in text
    assert text.startswith("🔕 <@U1> silenced") and "until 21 Nov 10:30 UTC" in text


# The endpoint


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    server = await FakeSlack().start()
    yield server
    await server.stop()


@pytest.fixture
def with_buttons(make_settings, slack: FakeSlack) -> Any:
    def make(**overrides: Any) -> Any:
        return make_settings(
            slack_bot_token=FAKE_SLACK_TOKEN,
            slack_channel=slack.channel_id,
            slack_api_url=slack.api_url,
            slack_signing_secret=SECRET,
            alertmanager_url=AM,
            charts=False,
            **overrides,
        )

    return make


def signed(body: bytes, secret: str = SECRET, at: float | None = None) -> dict[str, str]:
    timestamp = str(int(time.time() if at is None else at))
    return {
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": sign(secret, timestamp, body),
        "Content-Type": "application/x-www-form-urlencoded",
    }


def form(payload: Any) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


async def page(client: httpx.AsyncClient, slack: FakeSlack) -> dict[str, Any]:
    """Post the binance alert and return the Slack message it became."""
    import asyncio  # noqa: PLC0415

    assert (await client.post("/alerts", content=FIRING)).status_code == 202
    for _ in range(200):
        if slack.top_level():
            return slack.top_level()[0]
        await asyncio.sleep(0.02)
    raise AssertionError("no Slack message")


async def test_a_signed_click_silences_the_alert_and_replies_in_the_thread(
    with_buttons, running_app, slack: FakeSlack, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(url__regex=r".*/api/v1/query_range").mock(
        return_value=httpx.Response(200, json={"status": "error", "error": "down"})
    )
    fake = FakeAlertmanager(respx_mock)
    _, client = await running_app(with_buttons())
    root = await page(client, slack)
    (button,) = [b for b in buttons_of(root) if b["action_id"] == "silence-4h"]
    body = form(click_payload(button["value"], ts=root["ts"]))
    answer = await client.post("/slack/actions", content=body, headers=signed(body))
    assert answer.status_code == 200
    (made,) = fake.silences
    assert {m["name"]: m["value"] for m in made["matchers"]} == BINANCE_LABELS
    assert made["createdBy"] == "slack:ana (U0FAKE1)"
    ends = datetime.fromisoformat(made["endsAt"])
    assert abs(ends - datetime.now(UTC) - timedelta(hours=4)) < timedelta(seconds=30)
    (reply,) = slack.replies(root["ts"])
    text = "\n".join(all_text(reply))
    assert "🔕 <@U0FAKE1> silenced" in text and made["id"] in text
    (expire,) = [e for b in reply["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert expire["value"] == f"expire:{made['id']}"

    route = respx_mock.delete(f"{AM}/api/v2/silence/{made['id']}").mock(
        return_value=httpx.Response(200)
    )
    body = form(click_payload(expire["value"], ts=root["ts"]))
    assert (
        await client.post("/slack/actions", content=body, headers=signed(body))
    ).status_code == 200
    assert route.called
    assert "expired silence" in "\n".join(all_text(slack.replies(root["ts"])[-1]))


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Slack-Request-Timestamp": str(int(time.time()))},
        "wrong-secret",
        "ten-minutes-old",
        "body-changed",
    ],
)
async def test_an_unsigned_forged_or_old_request_gets_401_and_does_nothing(
    with_buttons, running_app, respx_mock: respx.MockRouter, headers: Any
) -> None:
    fake = FakeAlertmanager(respx_mock)
    _, client = await running_app(with_buttons())
    body = form(click_payload("silence:1:4"))
    if headers == "wrong-secret":
        headers = signed(body, secret="not-the-secret")
    elif headers == "ten-minutes-old":
        headers = signed(body, at=time.time() - 600)
    elif headers == "body-changed":
        headers = signed(form(click_payload("silence:2:4")))
    answer = await client.post("/slack/actions", content=body, headers=headers)
    assert answer.status_code == 401
    assert not fake.listing.called and not fake.posting.called


async def test_without_a_signing_secret_there_is_no_endpoint(make_settings, running_app) -> None:
    _, client = await running_app(make_settings(alertmanager_url=AM))
    body = form(click_payload("silence:1:4"))
    answer = await client.post("/slack/actions", content=body, headers=signed(body))
    assert answer.status_code == 404


async def test_a_signed_request_without_a_payload_or_too_large_is_refused(
    with_buttons, running_app
) -> None:
    _, client = await running_app(with_buttons())
    body = b"token=x"
    assert (
        await client.post("/slack/actions", content=body, headers=signed(body))
    ).status_code == 400
    big = b"payload=" + b"x" * 70_000
    assert (
        await client.post("/slack/actions", content=big, headers=signed(big))
    ).status_code == 413


async def test_a_click_on_an_alert_the_store_forgot_is_answered_in_the_thread(
    with_buttons, running_app, slack: FakeSlack, respx_mock: respx.MockRouter
) -> None:
    fake = FakeAlertmanager(respx_mock)
    _, client = await running_app(with_buttons())
    slack.messages["1700000000.000001"] = {"channel": slack.channel_id, "ts": "1700000000.000001"}
    body = form(click_payload("silence:999:1"))
    assert (
        await client.post("/slack/actions", content=body, headers=signed(body))
    ).status_code == 200
    (reply,) = slack.replies("1700000000.000001")
    assert "not done: that alert is no longer in the store" in reply["text"]
    assert not fake.posting.called


def test_the_buttons_block_is_slacks_actions_shape_on_pages_and_escalations() -> None:
    for kind in ("new", "escalation"):
        blocks = message(sample_notification(kind=kind, notification_id=7), buttons=True)
        [actions] = [
            b for b in blocks["attachments"][0]["blocks"] if b.get("block_id") == "silence"
        ]
        assert actions == {
            "type": "actions",
            "block_id": "silence",
            "elements": [
                {
                    "type": "button",
                    "action_id": f"silence-{hours}h",
                    "text": {"type": "plain_text", "text": f"🔕 Silence {hours}h"},
                    "value": f"silence:7:{hours}",
                }
                for hours in (1, 4, 24)
            ],
        }


async def test_the_diagnosis_edit_keeps_the_buttons(slack: FakeSlack) -> None:
    from slack_sdk.web.async_client import AsyncWebClient  # noqa: PLC0415

    from app.notifiers.base import Sent  # noqa: PLC0415
    from app.notifiers.slack import SlackBotNotifier, retry_handlers  # noqa: PLC0415

    client = AsyncWebClient(
        token=FAKE_SLACK_TOKEN, base_url=slack.api_url, retry_handlers=retry_handlers()
    )
    notifier = SlackBotNotifier(client, "#alerts", buttons=True)
    n = sample_notification(notification_id=7)
    ref = await notifier.send(n, None)
    await notifier.edit(n, Sent(ref))
    assert buttons_of(slack.messages[ref.partition(":")[2]]) == buttons_of(message(n, buttons=True))
    # A click's reply goes to the channel the click came from, by its id, not the configured name.
    await notifier.post_in_thread(slack.channel_id, ref.partition(":")[2], "done", [])
    assert slack.requests[-1].body["channel"] == slack.channel_id
