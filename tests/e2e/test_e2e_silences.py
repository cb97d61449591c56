"""Silences from Slack's buttons in the real stack: a click signed as Slack signs it makes a silence
in the real Alertmanager that mutes exactly the paged alert for the hour asked, the thread says who
did it, and its "Expire silence" button ends it; forged or stale clicks get 401 and make nothing."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from app.slack_signature import sign
from tests.e2e.conftest import eventually
from tests.loopback import all_text

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

SECRET = "fake-e2e-slack-signing-secret"


def click(value: str, ts: str, channel: str) -> bytes:
    payload = {
        "type": "block_actions",
        "user": {"id": "U0ONCALL1", "username": "ana", "name": "ana"},
        "channel": {"id": channel},
        "container": {"type": "message", "message_ts": ts, "channel_id": channel},
        "message": {"ts": ts},
        "actions": [{"action_id": "silence", "value": value, "type": "button"}],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def signed(body: bytes, secret: str = SECRET, age: float = 0) -> dict[str, str]:
    timestamp = str(int(time.time() - age))
    return {
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": sign(secret, timestamp, body),
        "Content-Type": "application/x-www-form-urlencoded",
    }


def buttons(message: dict[str, Any]) -> dict[str, str]:
    blocks = message.get("blocks") or message["attachments"][0]["blocks"]
    return {
        e["action_id"]: e["value"] for b in blocks if b["type"] == "actions" for e in b["elements"]
    }


async def get(url: str) -> Any:
    async with httpx.AsyncClient(timeout=5) as http:
        answer = await http.get(url)
        answer.raise_for_status()
        return answer.json()


async def until_true(check: Any, what: str, timeout: float = 30) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := await check()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)
    return result


async def test_a_signed_click_silences_the_paged_alert_in_alertmanager_and_forgeries_do_not(
    stack, exporter, fakes
) -> None:
    exporter.set("binance")
    svc = await stack(SLACK_SIGNING_SECRET=SECRET, CHARTS="false")
    exporter.set("binance", healthy=False)
    [root] = await eventually(fakes.slack.top_level, what="the firing message in Slack")
    offered = buttons(root)
    assert set(offered) == {"silence-1h", "silence-4h", "silence-24h"}
    am = svc.alertmanager_url
    body = click(offered["silence-1h"], root["ts"], root["channel"])

    async with httpx.AsyncClient(base_url=svc.service_url, timeout=5) as http:
        for headers in (signed(body, secret="not-the-secret"), signed(body, age=600), {}):
            refused = await http.post("/slack/actions", content=body, headers=headers)
            assert refused.status_code == 401
        assert await get(f"{am}/api/v2/silences") == [], "a refused click makes nothing"
        asked = datetime.now(UTC)
        assert (
            await http.post("/slack/actions", content=body, headers=signed(body))
        ).status_code == 200
        # A double tap (Slack retries too): still one silence.
        assert (
            await http.post("/slack/actions", content=body, headers=signed(body))
        ).status_code == 200

    [silence] = await until_true(lambda: get(f"{am}/api/v2/silences"), "the silence")
    [alert] = await get(f"{am}/api/v2/alerts?filter=alertname%3D%22APIDown%22")
    matchers = {m["name"]: m["value"] for m in silence["matchers"]}
    assert matchers == alert["labels"], "exactly the paged alert's labels"
    assert not any(m["isRegex"] for m in silence["matchers"])
    ends = datetime.fromisoformat(silence["endsAt"].replace("Z", "+00:00"))
    assert abs(ends - asked - timedelta(hours=1)) < timedelta(seconds=30)
    assert silence["createdBy"] == "slack:ana (U0ONCALL1)"
    muted = await until_true(
        lambda: get(f"{am}/api/v2/alerts?filter=alertname%3D%22APIDown%22&silenced=true"),
        "Alertmanager to mark the alert silenced",
    )
    assert muted[0]["status"]["silencedBy"] == [silence["id"]]

    replies = await eventually(lambda: fakes.slack.replies(root["ts"]), what="the thread reply")
    said = "\n".join(all_text(replies[0]))
    assert "🔕 <@U0ONCALL1> silenced" in said and silence["id"] in said
    expire = buttons(replies[0])["expire-silence"]
    body = click(expire, root["ts"], root["channel"])
    async with httpx.AsyncClient(base_url=svc.service_url, timeout=5) as http:
        assert (
            await http.post("/slack/actions", content=body, headers=signed(body))
        ).status_code == 200

    async def expired() -> bool:
        found = await get(f"{am}/api/v2/silence/{silence['id']}")
        return found["status"]["state"] == "expired"

    await until_true(expired, "the silence to be expired")
    await eventually(
        lambda: any(
            "expired silence" in "\n".join(all_text(r)) for r in fakes.slack.replies(root["ts"])
        ),
        what="the expiry said in the thread",
    )


async def test_a_telegram_tap_by_an_allowed_user_silences_and_anyone_elses_is_refused(
    stack, exporter, fakes
) -> None:
    exporter.set("okx")
    svc = await stack(TELEGRAM_ALLOWED_USER_IDS="1001,1002", CHARTS="false")
    exporter.set("okx", healthy=False)
    [page] = await eventually(lambda: fakes.telegram.sent, what="the Telegram page")
    [row] = json.loads(page["reply_markup"])["inline_keyboard"]
    offered = {b["text"]: b["callback_data"] for b in row}
    assert list(offered) == ["🔕 Silence 1h", "🔕 Silence 4h", "🔕 Silence 24h"]
    am = svc.alertmanager_url

    fakes.telegram.tap(offered["🔕 Silence 4h"], page["message_id"], user_id=666, username="eve")
    [refusal] = await eventually(lambda: fakes.telegram.answers, what="the refusal")
    assert "not allowed" in refusal["text"]
    asked = datetime.now(UTC)
    fakes.telegram.tap(offered["🔕 Silence 4h"], page["message_id"], user_id=1002, username="bo")
    replies = await eventually(lambda: fakes.telegram.sent[1:], what="the reply in the chat")
    assert replies[0]["reply_to"] == page["message_id"]
    assert "🔕 @bo silenced" in replies[0]["visible"]

    [silence] = await get(f"{am}/api/v2/silences")  # eve's tap made none
    [alert] = await get(f"{am}/api/v2/alerts?filter=alertname%3D%22APIDown%22")
    assert {m["name"]: m["value"] for m in silence["matchers"]} == alert["labels"]
    assert alert["labels"]["exchange"] == "okx" and silence["createdBy"] == "telegram:bo (1002)"
    ends = datetime.fromisoformat(silence["endsAt"].replace("Z", "+00:00"))
    assert abs(ends - asked - timedelta(hours=4)) < timedelta(seconds=30)
    assert [a["text"] for a in fakes.telegram.answers] == [refusal["text"], "Silenced for 4h"]
    assert fakes.telegram.conflicts == 0, "one poller"
