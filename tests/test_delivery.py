"""The whole service, from POST /alerts to a loopback Slack and Telegram."""

import asyncio
import json
import time
from typing import Any

import pytest

from app.delivery import Dispatcher, _settle
from app.lease import Lease
from app.metrics import Metrics
from app.notifiers.base import Progress, Sent, Thread
from app.routing import parse_matchers
from app.store import Claim, Delivery, LeaseLostError, MessageRef, SQLiteStore, StoreError
from tests.fakes import RecordingNotifier, fixture_text, sample_notification
from tests.loopback import FAKE_SLACK_TOKEN, FakeSlack, FakeTelegram, all_text

FIRING = fixture_text("alertmanager-0.25-firing_apidown_binance.json")
RESOLVED = fixture_text("alertmanager-0.25-resolved_apidown_binance.json")
FIRING_FIXTURE = "alertmanager-0.25-firing_apidown_binance.json"
RESOLVED_FIXTURE = "alertmanager-0.25-resolved_apidown_binance.json"


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
    store = app.state.services.store
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
    deliveries = await app.state.services.store.deliveries(1)
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


class DeliveryStore:
    """The store's delivery records in memory: what each notification's channels got, and the
    incidents' first messages; every write is recorded in order."""

    def __init__(
        self,
        deliveries: dict[int, dict[str, Delivery]] | None = None,
        threads: dict[tuple[int, str], MessageRef] | None = None,
    ) -> None:
        self.stored = deliveries or {}
        self.threads = threads or {}
        self.writes: list[tuple] = []

    async def deliveries(self, notification_id: int) -> dict[str, Delivery]:
        return self.stored.get(notification_id, {})

    async def record_delivery(
        self, claim: Claim, channel: str, status: str, ref: str | None, error: str | None
    ) -> None:
        self.writes.append(("delivery", claim.notification_id, channel, status, ref, error))

    async def record_step(self, claim: Claim, channel: str, step: str, ref: str | None) -> None:
        self.writes.append(("step", claim.notification_id, channel, step, ref))

    async def save_message_ref(
        self, claim: Claim, incident_id: int, channel: str, ref: str
    ) -> None:
        self.writes.append(("thread", incident_id, channel, ref))

    async def message_ref(self, incident_id: int, channel: str) -> MessageRef | None:
        return self.threads.get((incident_id, channel))

    async def renew(self, claim: Claim, lease: float) -> bool:
        return True

    def of(self, kind: str) -> list[tuple]:
        return [w for w in self.writes if w[0] == kind]


def lease_on(store: DeliveryStore, notification_id: int = 1) -> Lease:
    return Lease(store, Claim(notification_id, "w", 1), 30)


def delivered(metrics: Metrics, channel: str, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "alert_enricher_deliveries_total", {"channel": channel, "outcome": outcome}
    )
    return value or 0.0


class ExplodingNotifier(RecordingNotifier):
    """A channel with a bug: raises something that is not a NotifyError."""

    async def _send(self, notification, thread):
        self.calls += 1
        raise RuntimeError("boom")


async def test_every_channel_gets_the_notification_and_each_send_is_recorded() -> None:
    store, metrics = DeliveryStore(), Metrics()
    slack, telegram = RecordingNotifier("slack"), RecordingNotifier("telegram")
    dispatcher = Dispatcher([slack, telegram], store, metrics)
    assert dispatcher.channels == ["slack", "telegram"]
    report = await dispatcher.deliver(sample_notification(), lease_on(store))
    assert sorted(report.sent) == ["slack", "telegram"]
    assert not (report.skipped or report.retryable or report.permanent)
    assert sorted(store.of("delivery")) == [
        ("delivery", 1, "slack", "sent", "slack-msg-1", None),
        ("delivery", 1, "telegram", "sent", "telegram-msg-1", None),
    ]
    assert sorted(store.of("step")) == [
        ("step", 1, "slack", "message", "slack-msg-1"),
        ("step", 1, "telegram", "message", "telegram-msg-1"),
    ]
    assert delivered(metrics, "slack", "sent") == 1 and delivered(metrics, "telegram", "sent") == 1


async def test_without_a_lease_channels_are_sent_and_nothing_is_recorded() -> None:
    store = DeliveryStore()
    slack = RecordingNotifier("slack")
    report = await Dispatcher([slack], store, Metrics()).deliver(sample_notification())
    assert report.sent == ["slack"] and len(slack.sent) == 1
    assert store.writes == []


async def test_a_broken_channel_never_blocks_another() -> None:
    store, metrics = DeliveryStore(), Metrics()
    flaky = RecordingNotifier("flaky", fail_times=1)
    revoked = RecordingNotifier("revoked", fail_times=1, retryable=False)
    buggy, good = ExplodingNotifier("buggy"), RecordingNotifier("good")
    dispatcher = Dispatcher([flaky, revoked, buggy, good], store, metrics)
    report = await dispatcher.deliver(sample_notification(), lease_on(store))
    assert report.sent == ["good"] and len(good.sent) == 1
    assert report.retryable == {"flaky": "simulated outage", "buggy": "RuntimeError: boom"}
    assert report.permanent == {"revoked": "simulated outage"}
    assert store.of("delivery") == [
        ("delivery", 1, "revoked", "failed", None, "simulated outage"),
        ("delivery", 1, "good", "sent", "good-msg-1", None),
    ], "a retryable failure is not recorded, so the retry sends it"
    assert delivered(metrics, "flaky", "failed") == 1
    assert delivered(metrics, "revoked", "failed") == 1
    assert delivered(metrics, "buggy", "failed") == 1
    assert delivered(metrics, "good", "failed") == 0


async def test_a_permanent_failure_without_a_lease_is_reported_not_recorded() -> None:
    store = DeliveryStore()
    revoked = RecordingNotifier("revoked", fail_times=1, retryable=False)
    report = await Dispatcher([revoked], store, Metrics()).deliver(sample_notification())
    assert report.permanent == {"revoked": "simulated outage"} and store.writes == []


async def test_a_channel_already_sent_or_failed_is_skipped_on_a_retry() -> None:
    store = DeliveryStore(
        {
            1: {
                "sent": Delivery("sent", "sent", "ref", None),
                "failed": Delivery("failed", "failed", None, "revoked"),
            }
        }
    )
    metrics = Metrics()
    sent, failed, fresh = (RecordingNotifier(n) for n in ("sent", "failed", "fresh"))
    report = await Dispatcher([sent, failed, fresh], store, metrics).deliver(
        sample_notification(), lease_on(store)
    )
    assert sorted(report.skipped) == ["failed", "sent"] and report.sent == ["fresh"]
    assert sent.calls == failed.calls == 0 and fresh.calls == 1
    assert delivered(metrics, "sent", "skipped") == 1


async def test_a_partly_sent_channel_continues_after_its_done_steps() -> None:
    partial = Delivery("chat", "partial", None, None, {"message": "chat-msg-0"})
    store = DeliveryStore({1: {"chat": partial}})
    chat = RecordingNotifier("chat")
    report = await Dispatcher([chat], store, Metrics()).deliver(
        sample_notification(), lease_on(store)
    )
    assert chat.calls == 0, "the done step is not sent again"
    assert report.sent == ["chat"]
    assert store.of("delivery") == [("delivery", 1, "chat", "sent", "chat-msg-0", None)]


async def test_a_channel_whose_matchers_match_no_alert_gets_nothing() -> None:
    store, metrics = DeliveryStore(), Metrics()
    slack, telegram = RecordingNotifier("slack"), RecordingNotifier("telegram")
    routes = {
        "telegram": parse_matchers("severity=warning"),
        "slack": parse_matchers("severity!=warning"),
    }
    report = await Dispatcher([slack, telegram], store, metrics, routes).deliver(
        sample_notification(), lease_on(store)
    )
    assert report.sent == ["slack"] and telegram.calls == 0
    assert not (report.skipped or report.retryable or report.permanent)
    assert delivered(metrics, "telegram", "not_routed") == 1
    assert [w[2] for w in store.writes] == ["slack", "slack"]


async def test_a_new_incidents_first_message_becomes_its_thread() -> None:
    store = DeliveryStore()
    chat = RecordingNotifier("chat")
    notification = sample_notification().model_copy(update={"incident_id": 5})
    await Dispatcher([chat], store, Metrics()).deliver(notification, lease_on(store))
    assert chat.sent == [(notification, None)]
    assert store.of("thread") == [("thread", 5, "chat", "chat-msg-1")]


async def test_an_escalation_goes_into_the_thread_and_does_not_replace_it() -> None:
    original = sample_notification().model_copy(update={"incident_id": 5})
    store = DeliveryStore(
        threads={(5, "chat"): MessageRef("first-ref", original.model_dump_json())}
    )
    chat = RecordingNotifier("chat")
    escalation = sample_notification(kind="escalation").model_copy(update={"incident_id": 5})
    await Dispatcher([chat], store, Metrics()).deliver(escalation, lease_on(store))
    assert chat.sent == [(escalation, "first-ref")]
    assert store.of("thread") == [], "the thread stays on the incident's first message"


async def test_the_thread_carries_the_first_message_as_it_was_shown() -> None:
    original = sample_notification().model_copy(update={"incident_id": 5})
    store = DeliveryStore(
        threads={(5, "chat"): MessageRef("first-ref", original.model_dump_json())}
    )
    threads: list[Thread | None] = []

    class ThreadRecorder(RecordingNotifier):
        async def _send(self, notification, thread):
            threads.append(thread)
            return await super()._send(notification, thread)

    resolved = sample_notification(RESOLVED_FIXTURE).model_copy(update={"incident_id": 5})
    await Dispatcher([ThreadRecorder("chat")], store, Metrics()).deliver(resolved)
    assert threads == [Thread("first-ref", original)]


async def test_a_thread_without_its_original_still_carries_the_reference() -> None:
    store = DeliveryStore(threads={(5, "chat"): MessageRef("first-ref", None)})
    threads: list[Thread | None] = []

    class ThreadRecorder(RecordingNotifier):
        async def _send(self, notification, thread):
            threads.append(thread)
            return await super()._send(notification, thread)

    repeat = sample_notification(kind="repeat").model_copy(update={"incident_id": 5})
    await Dispatcher([ThreadRecorder("chat")], store, Metrics()).deliver(repeat)
    assert threads == [Thread("first-ref", None)]


async def test_an_escalation_without_a_thread_in_a_channel_opens_one() -> None:
    store = DeliveryStore(threads={(5, "other"): MessageRef("elsewhere", None)})
    chat = RecordingNotifier("chat")
    escalation = sample_notification(kind="escalation").model_copy(update={"incident_id": 5})
    await Dispatcher([chat], store, Metrics()).deliver(escalation, lease_on(store))
    assert chat.sent == [(escalation, None)]
    assert store.of("thread") == [("thread", 5, "chat", "chat-msg-1")]


@pytest.mark.parametrize("kind", ["repeat", "resolved"])
async def test_a_follow_up_without_a_thread_does_not_become_the_thread(kind: str) -> None:
    store = DeliveryStore()
    chat = RecordingNotifier("chat")
    fixture = RESOLVED_FIXTURE if kind == "resolved" else FIRING_FIXTURE
    follow_up = sample_notification(fixture, kind=kind).model_copy(update={"incident_id": 5})
    await Dispatcher([chat], store, Metrics()).deliver(follow_up, lease_on(store))
    assert chat.sent == [(follow_up, None)]
    assert store.of("thread") == []


async def test_a_new_message_never_looks_up_a_thread() -> None:
    store = DeliveryStore(threads={(5, "chat"): MessageRef("stale", None)})
    chat = RecordingNotifier("chat")
    notification = sample_notification().model_copy(update={"incident_id": 5})
    await Dispatcher([chat], store, Metrics()).deliver(notification, lease_on(store))
    assert chat.sent == [(notification, None)]


async def test_without_an_incident_or_a_reference_no_thread_is_saved() -> None:
    store = DeliveryStore()

    class NoRef(RecordingNotifier):
        async def _send(self, notification, thread):
            await super()._send(notification, thread)
            return None

    unfiled = sample_notification()
    await Dispatcher([RecordingNotifier("chat")], store, Metrics()).deliver(
        unfiled, lease_on(store)
    )
    filed = sample_notification().model_copy(update={"incident_id": 5})
    await Dispatcher([NoRef("quiet")], store, Metrics()).deliver(filed, lease_on(store))
    assert store.of("thread") == []
    assert [w[2:] for w in store.of("delivery")] == [
        ("chat", "sent", "chat-msg-1", None),
        ("quiet", "sent", None, None),
    ]


def paged(metrics: Metrics, severity: str) -> float:
    value = metrics.registry.get_sample_value(
        "alert_enricher_time_to_page_seconds_count", {"severity": severity}
    )
    return value or 0.0


async def test_time_to_page_is_observed_for_pages_by_severity() -> None:
    metrics = Metrics()
    dispatcher = Dispatcher([RecordingNotifier("chat")], DeliveryStore(), metrics)
    await dispatcher.deliver(sample_notification(), accepted=time.monotonic())
    odd = sample_notification(labels={"severity": "sev1"})
    await dispatcher.deliver(odd, accepted=time.monotonic())
    await dispatcher.deliver(sample_notification(kind="repeat"), accepted=time.monotonic())
    await dispatcher.deliver(sample_notification())
    assert paged(metrics, "critical") == 1
    await dispatcher.deliver(sample_notification(kind="escalation"), accepted=time.monotonic())
    assert paged(metrics, "critical") == 2, "an escalation pages too"
    assert paged(metrics, "other") == 1 and paged(metrics, "sev1") == 0
    count = metrics.registry.get_sample_value(
        "alert_enricher_time_to_page_seconds_sum", {"severity": "critical"}
    )
    assert count is not None and 0 <= count < 60


class IllustratingNotifier(RecordingNotifier):
    """Attaches after sending (charts); records what the store and metrics held by then."""

    def __init__(self, store: DeliveryStore, metrics: Metrics) -> None:
        super().__init__("chat")
        self.store, self.metrics = store, metrics
        self.seen: list[tuple[Any, ...]] = []
        self.threads: list[Thread | None] = []

    async def attach(self, notification, ref, thread, progress=None) -> None:
        self.threads.append(thread)
        self.seen.append((ref, list(self.store.of("delivery")), paged(self.metrics, "critical")))
        await (progress or Progress()).step("chart-1", self._chart)

    async def _chart(self) -> str:
        return "chart-ref"


async def test_what_illustrates_a_page_follows_it_once_it_is_recorded_and_timed() -> None:
    store, metrics = DeliveryStore(), Metrics()
    notifier = IllustratingNotifier(store, metrics)
    dispatcher = Dispatcher([notifier], store, metrics)
    await dispatcher.deliver(sample_notification(), lease_on(store), accepted=time.monotonic())
    [(ref, recorded, timed)] = notifier.seen
    assert ref == "chat-msg-1" and [d[2:4] for d in recorded] == [("chat", "sent")]
    assert timed == 1, "time to page does not wait for a chart"
    assert ("chat", "chart-1", "chart-ref") in [w[2:] for w in store.of("step")]
    assert notifier.threads == [None], "a new page is its own thread"


async def test_an_escalations_illustration_goes_into_the_incidents_thread() -> None:
    store, metrics = DeliveryStore(), Metrics()
    store.threads[(9, "chat")] = MessageRef("chat-root", None)
    notifier = IllustratingNotifier(store, metrics)
    escalation = sample_notification(kind="escalation").model_copy(update={"incident_id": 9})
    await Dispatcher([notifier], store, metrics).deliver(escalation, lease_on(store))
    [thread] = notifier.threads
    assert thread is not None and thread.ref == "chat-root"


def edited(metrics: Metrics, channel: str, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "alert_enricher_diagnosis_edits_total", {"channel": channel, "outcome": outcome}
    )
    return value or 0.0


async def test_an_edit_replaces_only_the_messages_that_were_sent() -> None:
    page = {
        "slack": Delivery("slack", "sent", "slack-ref", None, {"post": "slack-ref"}),
        "telegram": Delivery("telegram", "failed", None, "revoked"),
    }
    store, metrics = DeliveryStore({1: page}), Metrics()
    slack, telegram, absent = (RecordingNotifier(n) for n in ("slack", "telegram", "absent"))
    notification = sample_notification()
    report = await Dispatcher([slack, telegram, absent], store, metrics).edit(
        notification, 1, lease_on(store, 2)
    )
    assert report.sent == ["slack"]
    assert slack.edits == [(notification, "slack-ref")]
    assert telegram.calls == absent.calls == 0
    assert store.writes == [
        ("step", 2, "slack", "edit", "slack-ref"),
        ("delivery", 2, "slack", "sent", "slack-ref", None),
    ]
    assert edited(metrics, "slack", "edited") == 1


async def test_an_edit_gets_the_pages_earlier_steps() -> None:
    page = {"chat": Delivery("chat", "sent", "part-1-ref", None, {"part-1": "part-1-ref"})}
    store = DeliveryStore({1: page})
    seen: list[Sent] = []

    class EditRecorder(RecordingNotifier):
        async def edit(self, notification, sent, progress=None):
            seen.append(sent)
            return await super().edit(notification, sent, progress)

    await Dispatcher([EditRecorder("chat")], store, Metrics()).edit(
        sample_notification(), 1, lease_on(store, 2)
    )
    assert seen == [Sent("part-1-ref", {"part-1": "part-1-ref"})]


async def test_an_edit_already_done_or_failed_is_skipped() -> None:
    page = {n: Delivery(n, "sent", f"{n}-ref", None) for n in ("done", "failed", "todo")}
    edits = {
        "done": Delivery("done", "sent", "done-ref", None),
        "failed": Delivery("failed", "failed", None, "gone"),
        "todo": Delivery("todo", "partial", None, None, {}),
    }
    store = DeliveryStore({1: page, 2: edits})
    done, failed, todo = (RecordingNotifier(n) for n in ("done", "failed", "todo"))
    report = await Dispatcher([done, failed, todo], store, Metrics()).edit(
        sample_notification(), 1, lease_on(store, 2)
    )
    assert sorted(report.skipped) == ["done", "failed"] and report.sent == ["todo"]
    assert done.calls == failed.calls == 0 and todo.calls == 1


async def test_a_failed_edit_is_counted_and_not_recorded_as_sent() -> None:
    page = {
        "flaky": Delivery("flaky", "sent", "flaky-ref", None),
        "good": Delivery("good", "sent", "good-ref", None),
    }
    store, metrics = DeliveryStore({1: page}), Metrics()
    flaky, good = RecordingNotifier("flaky", fail_times=1), RecordingNotifier("good")
    report = await Dispatcher([flaky, good], store, metrics).edit(
        sample_notification(), 1, lease_on(store, 2)
    )
    assert report.retryable == {"flaky": "simulated outage"} and report.sent == ["good"]
    assert edited(metrics, "flaky", "failed") == 1 and edited(metrics, "flaky", "edited") == 0
    assert ("delivery", 2, "flaky", "sent", "flaky-ref", None) not in store.writes


async def test_when_every_record_fails_all_channels_still_send_and_the_first_error_is_raised() -> (
    None
):
    class FailingStore(DeliveryStore):
        async def record_delivery(self, claim, channel, status, ref, error):
            raise StoreError(f"cannot record {channel}")

    store = FailingStore()
    a, b = RecordingNotifier("a"), RecordingNotifier("b")
    with pytest.raises(StoreError, match="cannot record a"):
        await Dispatcher([a, b], store, Metrics()).deliver(sample_notification(), lease_on(store))
    assert len(a.sent) == len(b.sent) == 1


async def test_a_lost_claim_outranks_an_error_that_came_first() -> None:
    async def broken() -> None:
        raise RuntimeError("bug")

    async def lost() -> None:
        raise LeaseLostError("taken over")

    with pytest.raises(LeaseLostError):
        await _settle([broken(), lost()])


async def test_each_failure_is_logged_with_its_channel_and_whether_it_is_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = DeliveryStore()
    flaky = RecordingNotifier("flaky", fail_times=1)
    revoked = RecordingNotifier("revoked", fail_times=1, retryable=False)
    await Dispatcher([flaky, revoked, ExplodingNotifier("buggy")], store, Metrics()).deliver(
        sample_notification(notification_id=7), lease_on(store, 7)
    )
    errors = sorted(r.getMessage() for r in caplog.records if r.name == "app.delivery")
    assert errors == [
        "buggy notifier raised unexpectedly",
        "delivery to buggy failed (will retry) for notification 7: RuntimeError: boom",
        "delivery to flaky failed (will retry) for notification 7: simulated outage",
        "delivery to revoked failed (permanent, not retried) for notification 7: simulated outage",
    ]
    [bug] = [r for r in caplog.records if r.exc_info]
    assert bug.getMessage() == "buggy notifier raised unexpectedly"


async def test_an_edit_refused_for_good_is_recorded_failed_and_not_tried_again() -> None:
    page = {"revoked": Delivery("revoked", "sent", "revoked-ref", None)}
    store = DeliveryStore({1: page})
    revoked = RecordingNotifier("revoked", fail_times=1, retryable=False)
    report = await Dispatcher([revoked], store, Metrics()).edit(
        sample_notification(), 1, lease_on(store, 2)
    )
    assert report.permanent == {"revoked": "simulated outage"}
    assert store.of("delivery") == [("delivery", 2, "revoked", "failed", None, "simulated outage")]


async def test_a_retried_edit_continues_after_its_done_steps() -> None:
    page = {"chat": Delivery("chat", "sent", "chat-ref", None)}
    edit = {"chat": Delivery("chat", "partial", None, None, {"edit": "chat-ref"})}
    store = DeliveryStore({1: page, 2: edit})
    chat = RecordingNotifier("chat")
    report = await Dispatcher([chat], store, Metrics()).edit(
        sample_notification(), 1, lease_on(store, 2)
    )
    assert report.sent == ["chat"]
    assert chat.edits == [], "the edit step was done before: not done twice"
    assert store.of("delivery") == [("delivery", 2, "chat", "sent", "chat-ref", None)]
