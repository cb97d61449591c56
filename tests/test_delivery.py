"""The whole service, from POST /alerts to a loopback Slack and Telegram."""

import asyncio
import json

import pytest

from app.delivery import Dispatcher
from app.lease import Lease
from app.metrics import Metrics
from app.store import LeaseLostError, SQLiteStore, StoreError
from tests.fakes import RecordingNotifier, fixture_text, sample_notification
from tests.loopback import FAKE_SLACK_TOKEN, FakeSlack, FakeTelegram, all_text

FIRING = fixture_text("alertmanager-0.25-firing_apidown_binance.json")
RESOLVED = fixture_text("alertmanager-0.25-resolved_apidown_binance.json")


@pytest.fixture
async def slack():
    server = await FakeSlack().start()
    yield server
    await server.stop()


@pytest.fixture
async def telegram():
    server = await FakeTelegram().start()
    yield server
    await server.stop()


@pytest.fixture
def both(make_settings, slack, telegram):
    def settings(**overrides):
        return make_settings(
            slack_bot_token=FAKE_SLACK_TOKEN,
            slack_channel=slack.channel_id,
            slack_api_url=slack.api_url,
            telegram_bot_token=telegram.token,
            telegram_chat_id="-100123",
            telegram_api_url=telegram.api_url,
            **overrides,
        )

    return settings


async def settle(app) -> None:
    store = app.state.runtime.store
    async with asyncio.timeout(10):
        while await store.backlog():
            await asyncio.sleep(0.02)


async def test_firing_then_resolved_arrive_once_per_channel_and_threaded(
    both, running_app, slack, telegram
) -> None:
    app, client = await running_app(both())
    assert (await client.post("/alerts", content=FIRING)).status_code == 202
    await settle(app)
    [root] = slack.top_level()
    assert len(telegram.sent) == 1

    assert (await client.post("/alerts", content=RESOLVED)).status_code == 202
    assert (await client.post("/alerts", content=RESOLVED)).json()["status"] == "duplicate"
    await settle(app)
    assert len(slack.messages) == 2 and len(telegram.sent) == 2
    [reply] = slack.replies(root["ts"])
    assert "RESOLVED: APIDown on binance" in "\n".join(all_text(reply))
    assert slack.messages[root["ts"]]["updated"] is True
    first, second = telegram.sent
    assert json.loads(second["reply_parameters"])["message_id"] == 100
    assert "RESOLVED" in second["text"] and "FIRING" in first["text"]


async def test_group_lifecycle_new_partial_resolve_repeat(
    both, running_app, slack, telegram
) -> None:
    app, client = await running_app(both(dedup_window_seconds=0))
    mixed = fixture_text("alertmanager-0.25-mixed_apidown_one_resolved.json")
    for body in (fixture_text("alertmanager-0.25-firing_apidown_group_of_3.json"), mixed, mixed):
        assert (await client.post("/alerts", content=body)).status_code == 202
    await settle(app)
    [root] = slack.top_level()
    replies = slack.replies(root["ts"])
    headers = [r["text"] for r in replies]
    assert "PARTLY RESOLVED" in headers[0] and "STILL FIRING" in headers[1]
    texts = [t["text"] for t in telegram.sent]
    assert [
        "FIRING: APIDown" in texts[0],
        "PARTLY RESOLVED" in texts[1],
        "STILL FIRING" in texts[2],
    ] == [True] * 3


async def test_one_broken_channel_never_blocks_the_other(
    make_settings, running_app, slack, telegram
) -> None:
    settings = make_settings(
        slack_bot_token="xoxb-revoked-fake",
        slack_channel=slack.channel_id,
        slack_api_url=slack.api_url,
        telegram_bot_token=telegram.token,
        telegram_chat_id="-100123",
        telegram_api_url=telegram.api_url,
    )
    app, client = await running_app(settings)
    await client.post("/alerts", content=FIRING)
    await settle(app)
    assert len(telegram.sent) == 1 and not slack.messages
    deliveries = await app.state.runtime.store.deliveries(1)
    assert (
        deliveries["slack"].status == "failed"
        and "invalid Slack token" in deliveries["slack"].error
    )
    assert deliveries["telegram"].status == "sent"


async def test_routing_sends_only_matching_alerts_to_a_channel(
    both, running_app, slack, telegram
) -> None:
    app, client = await running_app(both(telegram_matchers="severity=warning"))
    await client.post("/alerts", content=FIRING)
    await settle(app)
    assert len(slack.messages) == 1 and not telegram.sent


async def test_hostile_annotation_arrives_escaped_in_both_channels(
    both, running_app, slack, telegram
) -> None:
    raw = json.loads(FIRING)
    raw["alerts"][0]["annotations"]["description"] = (
        "<script>x</script> <!channel> </b> & " * 300
    )[:7000]
    raw["commonAnnotations"] = raw["alerts"][0]["annotations"]
    app, client = await running_app(both())
    await client.post("/alerts", content=json.dumps(raw))
    await settle(app)
    [message] = slack.messages.values()
    slack_text = "\n".join(all_text(message))
    assert "<!channel>" not in slack_text and "&lt;!channel&gt;" in slack_text
    [tg] = telegram.sent
    assert "&lt;script&gt;x&lt;/script&gt;" in tg["text"] and "… [shortened]" in tg["text"]
    assert "<script>" not in tg["text"]


class SlowNotifier(RecordingNotifier):
    async def _send(self, notification, thread):
        await asyncio.sleep(0.2)
        return await super()._send(notification, thread)


async def test_a_store_error_on_one_channel_lets_the_other_settle_before_the_outcome(
    tmp_path,
) -> None:
    store = await SQLiteStore.open(f"sqlite:///{tmp_path}/s.db")
    await store.accept("k", "g", FIRING, 600)
    claimed = await store.claim("w", 30)
    fast, slow = RecordingNotifier("fast"), SlowNotifier("slow")
    record = store.record_delivery

    async def failing_record(claim, channel, *args):
        if channel == "fast":
            raise StoreError("disk I/O error")
        return await record(claim, channel, *args)

    store.record_delivery = failing_record
    dispatcher = Dispatcher([fast, slow], store, Metrics())
    with pytest.raises(StoreError):
        await dispatcher.deliver(sample_notification(), Lease(store, claimed.claim, 30))
    deliveries = await store.deliveries(claimed.id)
    await store.close()
    assert len(slow.sent) == 1 and deliveries["slow"].status == "sent", "slow settled first"
    assert deliveries["fast"].steps == {"message": "fast-msg-1"}, "a retry will not resend fast"


async def test_a_lost_claim_outranks_other_channel_errors(tmp_path) -> None:
    store = await SQLiteStore.open(f"sqlite:///{tmp_path}/s.db")
    await store.accept("k", "g", FIRING, 600)
    claimed = await store.claim("w", 30)

    async def lost() -> None:
        raise LeaseLostError("taken over")

    lease = Lease(store, claimed.claim, 30)
    lease.hold = lost
    broken = RecordingNotifier("broken", fail_times=1)
    with pytest.raises(LeaseLostError):
        await Dispatcher([broken, RecordingNotifier("ok")], store, Metrics()).deliver(
            sample_notification(), lease
        )
    await store.close()
    assert broken.calls == 0, "nothing is sent without the claim"
