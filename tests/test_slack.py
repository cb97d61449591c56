import asyncio
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from app.formatting import clean
from app.notifiers import build_notifiers
from app.notifiers.base import NotifyError, Progress, Sent, Thread
from app.notifiers.slack import SlackBotNotifier, SlackWebhookNotifier, retry_handlers
from app.notifiers.slack_blocks import MAX_BLOCKS, SECTION_CHARS, escape, message
from tests.fakes import GOOD_DIAGNOSIS, sample_notification, with_new
from tests.loopback import FAKE_SLACK_TOKEN, FakeSlack, all_text

HOSTILE = "<script>alert(1)</script> <!channel> <!here> <@U123> <#C1|x> & </b><i> " * 100
OUR_LINK = re.compile(r"<https?://[^<>|\s]+\|[^<>]+>")


@pytest.fixture
async def slack():
    server = await FakeSlack().start()
    yield server
    await server.stop()


def bot(
    slack: FakeSlack, token: str = FAKE_SLACK_TOKEN, channel: str = "C0FAKE0001"
) -> SlackBotNotifier:
    client = AsyncWebClient(token=token, base_url=slack.api_url, retry_handlers=retry_handlers())
    return SlackBotNotifier(client, channel)


def check_limits(payload: dict) -> None:
    blocks = payload["attachments"][0]["blocks"]
    assert len(blocks) <= MAX_BLOCKS
    for block in blocks:
        if block["type"] == "section":
            if "text" in block:
                assert len(block["text"]["text"]) <= SECTION_CHARS
            assert len(block.get("fields", [])) <= 10
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
    for text in all_text(payload):
        assert "<" not in OUR_LINK.sub("", text), f"raw '<' survived in {text[:80]!r}"


def test_escape_neutralises_mentions() -> None:
    assert escape("<!channel> & <@U1>") == "&lt;!channel&gt; &amp; &lt;@U1&gt;"


def test_firing_message_shows_everything_the_contract_asks_for() -> None:
    payload = message(sample_notification())
    text = "\n".join(all_text(payload))
    for needle in (
        "FIRING: APIDown on binance",
        "critical",
        "`exchange=binance`",
        "binance API is down",
        "Diagnosis",
        "Impact",
        "1. Check the exchange",
        "Rollback plan",
        "Recovery estimate",
        "now *0*",
        "██▁▁",
        "rule-based fallback: no LLM API key configured",
        "Silence",
        "Graph",
    ):
        assert needle in text, needle
    assert payload["attachments"][0]["color"] == "#D32F2F"
    assert payload["text"].startswith("🔥 FIRING: APIDown on binance")
    check_limits(payload)


def test_hostile_annotation_is_escaped_and_shortened_visibly() -> None:
    payload = message(
        sample_notification(annotations={"description": HOSTILE[:7000], "summary": "<!channel>"})
    )
    check_limits(payload)
    text = "\n".join(all_text(payload))
    assert "&lt;!channel&gt;" in text and "… [shortened]" in text


def test_huge_llm_diagnosis_continues_over_sections_without_loss() -> None:
    long = {
        **GOOD_DIAGNOSIS,
        "diagnosis": ("<b>cause</b> " * 400)[:2000],
        "action_items": ["x" * 500] * 10,
    }
    payload = message(sample_notification(diagnosis=long))
    check_limits(payload)
    joined = "".join(all_text(payload))
    assert joined.count("&lt;b&gt;cause&lt;/b&gt;") >= 150


def test_large_group_summarises_instead_of_overflowing() -> None:
    n = sample_notification("alertmanager-0.25-firing_apidown_group_of_3.json")
    n = n.model_copy(update={"firing": n.firing * 30})
    payload = message(n)
    check_limits(payload)
    assert "… and 80 more alerts" in "\n".join(all_text(payload))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    label=st.text(max_size=300),
    annotation=st.text(max_size=5000),
    action=st.text(min_size=1, max_size=600),
)
def test_any_text_gives_a_payload_within_limits_with_no_raw_mentions(
    label, annotation, action
) -> None:
    n = sample_notification(
        labels={"exchange": label},
        annotations={"summary": annotation[:500], "description": annotation},
        diagnosis={
            **GOOD_DIAGNOSIS,
            "diagnosis": annotation[:2000] if clean(annotation[:2000]).strip() else "d",
            "action_items": [action] * 10,
        },
    )
    check_limits(message(n))


async def test_bot_posts_then_threads_the_resolved_reply_and_updates_the_header(slack) -> None:
    notifier = bot(slack)
    firing = sample_notification()
    ref = await notifier.send(firing, None)
    channel, ts = ref.split(":")
    assert channel == "C0FAKE0001"
    posted = slack.messages[ts]
    assert posted["link_names"] is False

    resolved = sample_notification(
        "alertmanager-0.25-resolved_apidown_binance.json", notification_id=2
    )
    await notifier.send(resolved, Thread(ref=ref, original=firing))
    [reply] = slack.replies(ts)
    assert "RESOLVED: APIDown on binance" in reply["attachments"][0]["blocks"][0]["text"]["text"]
    assert "fired for 6s" in "\n".join(all_text(reply))
    original = slack.messages[ts]
    assert original["updated"] is True
    assert original["attachments"][0]["blocks"][0]["text"]["text"].startswith("✅ RESOLVED")
    assert "Diagnosis" in "\n".join(all_text(original)), "the update keeps the diagnosis"
    assert len(slack.top_level()) == 1


async def test_escalation_is_broadcast_from_the_thread(slack) -> None:
    notifier = bot(slack)
    ref = await notifier.send(sample_notification(), None)
    escalation = sample_notification(
        "alertmanager-0.25-firing_apidown_group_of_3.json", kind="escalation"
    )
    await notifier.send(escalation, Thread(ref=ref))
    [reply] = slack.replies(ref.split(":")[1])
    assert reply["reply_broadcast"] is True


async def test_rate_limit_is_retried_after_retry_after_and_sends_once(slack) -> None:
    slack.fail_next(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "0"})
    await bot(slack).send(sample_notification(), None)
    assert len(slack.messages) == 1
    assert [r.method for r in slack.requests] == ["chat.postMessage", "chat.postMessage"]


async def test_server_error_is_retried(slack) -> None:
    slack.fail_next(503, {"ok": False, "error": "service_unavailable"})
    await bot(slack).send(sample_notification(), None)
    assert len(slack.messages) == 1


@pytest.mark.parametrize(
    ("token", "channel", "words"),
    [
        ("xoxb-wrong-fake", "C0FAKE0001", "invalid Slack token"),
        (FAKE_SLACK_TOKEN, "C404", "channel not found"),
    ],
)
async def test_permanent_errors_are_not_retried(slack, token, channel, words) -> None:
    with pytest.raises(NotifyError, match=words) as raised:
        await bot(slack, token=token, channel=channel).send(sample_notification(), None)
    assert raised.value.retryable is False
    assert len(slack.requests) == 1


async def test_persistent_rate_limit_is_a_retryable_failure(slack) -> None:
    for _ in range(4):
        slack.fail_next(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "0"})
    with pytest.raises(NotifyError) as raised:
        await bot(slack).send(sample_notification(), None)
    assert raised.value.retryable is True


async def test_unreachable_slack_is_retryable() -> None:
    client = AsyncWebClient(token=FAKE_SLACK_TOKEN, base_url="http://127.0.0.1:9/api/")
    with pytest.raises(NotifyError, match="unreachable") as raised:
        await SlackBotNotifier(client, "C1").send(sample_notification(), None)
    assert raised.value.retryable


async def test_webhook_mode_sends_the_same_blocks(slack) -> None:
    notifier = SlackWebhookNotifier(AsyncWebhookClient(f"{slack.url}/services/T0/B0/fake"))
    assert await notifier.send(sample_notification(), None) is None
    [post] = slack.webhook_posts
    assert (
        post["attachments"][0]["blocks"]
        == message(sample_notification())["attachments"][0]["blocks"]
    )


async def test_webhook_mode_maps_errors(slack) -> None:
    notifier = SlackWebhookNotifier(AsyncWebhookClient(f"{slack.url}/services/T0/B0/fake"))
    slack.fail_next(404, "no_service")
    with pytest.raises(NotifyError) as raised:
        await notifier.send(sample_notification(), None)
    assert not raised.value.retryable


async def test_ping_uses_auth_test(slack) -> None:
    assert "bot enricher in team FakeTeam" in await bot(slack).ping()


def test_header_is_escaped_and_never_cuts_an_entity() -> None:
    payload = message(sample_notification(labels={"exchange": "<" * 200}))
    header = payload["attachments"][0]["blocks"][0]["text"]["text"]
    assert len(header) <= 150 and "<" not in header
    assert header.endswith("… [shortened]")


def test_follow_up_counts_every_alert_it_does_not_show() -> None:
    base = sample_notification("alertmanager-0.25-mixed_apidown_one_resolved.json", kind="resolved")
    many = base.model_copy(update={"resolved": base.resolved * 15, "firing": base.firing[:1] * 3})
    text = "\n".join(all_text(message(many)))
    assert "… and 5 more alerts" in text, "15 resolved + 3 firing, 13 shown"


async def test_a_retry_after_the_resolved_reply_only_updates_the_original(slack) -> None:
    notifier = bot(slack)
    firing = sample_notification()
    ref = await notifier.send(firing, None)
    _, ts = ref.split(":")
    resolved = sample_notification(
        "alertmanager-0.25-resolved_apidown_binance.json", notification_id=2
    )
    # An earlier attempt posted the reply, then timed out on chat.update.
    done = {"reply": f"C0FAKE0001:{ts}-reply"}
    again = await notifier.send(resolved, Thread(ref=ref, original=firing), Progress(done))
    assert again == f"C0FAKE0001:{ts}-reply"
    assert slack.replies(ts) == [], "the reply is not posted twice"
    assert slack.messages[ts]["updated"] is True


async def test_every_call_to_slack_is_a_held_step(slack) -> None:
    holds: list[str] = []

    async def hold() -> None:
        holds.append("checked")

    resolved = sample_notification(
        "alertmanager-0.25-resolved_apidown_binance.json", notification_id=2
    )
    notifier, firing = bot(slack), sample_notification()
    ref = await notifier.send(firing, None, Progress(hold=hold))
    await notifier.send(resolved, Thread(ref=ref, original=firing), Progress(hold=hold))
    assert len(holds) == 3, "post, reply and update each check the claim first"


MIXED = "alertmanager-0.25-mixed_apidown_one_resolved.json"
GROUP_OF_3 = "alertmanager-0.25-firing_apidown_group_of_3.json"


def blocks_of(payload: dict) -> list[dict]:
    return payload["attachments"][0]["blocks"]


def section_text(blocks: list[dict], needle: str) -> str:
    return next(b["text"]["text"] for b in blocks if needle in b.get("text", {}).get("text", ""))


def test_full_message_headline_names_only_the_firing_and_lists_the_resolved() -> None:
    payload = message(sample_notification(MIXED))
    blocks = blocks_of(payload)
    assert blocks[0]["text"]["text"] == "🔥 FIRING: APIDown on bybit and okx"
    resolved = section_text(blocks, "Resolved")
    assert "✅ *APIDown* `exchange=binance`" in resolved
    assert "resolved, fired for 4s" in resolved
    assert "bybit" not in resolved and "okx" not in resolved
    check_limits(payload)


def test_full_message_shows_ten_resolved_alerts_and_counts_the_rest() -> None:
    base = sample_notification(MIXED)
    payload = message(base.model_copy(update={"resolved": base.resolved * 15}))
    check_limits(payload)
    text = "\n".join(all_text(payload))
    assert text.count("resolved, fired for 4s") == 10
    assert "… and 5 more alerts" in text


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(label=st.text(max_size=300), name=st.text(min_size=1, max_size=300))
def test_any_text_in_a_mixed_group_gives_a_payload_within_limits(label, name) -> None:
    n = sample_notification(MIXED, labels={"exchange": label, "alertname": name, "zone": label})
    n = n.model_copy(update={"resolved": n.resolved * 12})
    check_limits(message(n))


def test_escalation_marks_new_alerts_next_to_their_names() -> None:
    n = with_new(sample_notification(GROUP_OF_3, kind="escalation"), "okx")
    blocks = blocks_of(message(n))
    assert blocks[0]["text"]["text"].startswith("🔥 MORE FIRING")
    assert section_text(blocks, "exchange=okx").startswith("*APIDown* 🆕 new `exchange=okx`")
    assert "🆕" not in section_text(blocks, "exchange=binance")
    assert "🆕" not in "\n".join(all_text(message(sample_notification(GROUP_OF_3))))


async def test_resolving_updates_the_originals_counts_and_how_long_it_fired(slack) -> None:
    notifier = bot(slack)
    firing = sample_notification()
    ref = await notifier.send(firing, None)
    ts = ref.split(":")[1]
    fields = [f["text"] for f in blocks_of(slack.messages[ts])[1]["fields"]]
    assert "*Alerts*\n1 firing, 0 resolved" in fields

    resolved = sample_notification(
        "alertmanager-0.25-resolved_apidown_binance.json", notification_id=2
    )
    await notifier.send(resolved, Thread(ref=ref, original=firing))
    blocks = blocks_of(slack.messages[ts])
    fields = [f["text"] for f in blocks[1]["fields"]]
    assert "*Alerts*\n0 firing, 1 resolved" in fields
    assert "*Fired for*\n6s" in fields, "startsAt 10:19:26 to endsAt 10:19:32"
    assert not any(f.startswith("*Firing for*") for f in fields)
    assert firing.diagnosis.diagnosis in section_text(blocks, "Diagnosis"), "the diagnosis stays"


async def test_the_service_s_slack_client_keeps_one_connection(make_settings, slack) -> None:
    settings = make_settings(
        slack_bot_token=FAKE_SLACK_TOKEN,
        slack_channel=slack.channel_id,
        slack_api_url=slack.api_url,
    )
    [notifier] = build_notifiers(settings)
    for _ in range(3):
        await notifier.send(sample_notification(), None)
    await notifier.close()
    peers = {r.peer for r in slack.requests}
    assert len(slack.requests) == 3 and len(peers) == 1, "one session: no handshake per message"


SLACK_SECTION_LIMIT = 3000  # Slack's documented limit for a section's text
ENTITY = re.compile(r"&(?:amp|lt|gt);")


def check_cuts(payload: dict) -> None:
    """Slack's limits, and no escaped entity or link of ours cut in two, in any block."""
    blocks = payload["attachments"][0]["blocks"]
    assert len(blocks) <= 50
    for block in blocks:
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= SLACK_SECTION_LIMIT
    for text in all_text(payload):
        assert "&" not in ENTITY.sub("", text), f"a cut entity in {text[-80:]!r}"
        assert "<" not in OUR_LINK.sub("", text), f"an unbalanced link in {text[-120:]!r}"
        assert ">" not in OUR_LINK.sub("", text), f"a stray '>' in {text[-120:]!r}"
        assert "<!channel>" not in text and "<!here>" not in text


def test_a_long_escaped_alert_section_is_cut_between_entities_and_links() -> None:
    """Issue 14: the alert section was cut at 2,999 characters after escaping, leaving the graph
    link `<http://…` unclosed."""
    n = sample_notification(
        annotations={"summary": "<" * 300, "description": "<" * 259 + "x" * 541}
    )
    payload = message(n)
    check_cuts(payload)
    alert = blocks_of(payload)[2]["text"]["text"]
    assert alert.startswith("*APIDown*") and "… [shortened]" in alert


class RecordingClient:
    """Stands in for slack-sdk's web and webhook clients: keeps every message body it is given."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []

    async def chat_postMessage(self, **body) -> dict:
        self.bodies.append(body)
        return {"channel": body["channel"], "ts": f"{len(self.bodies)}.0"}

    async def chat_update(self, **body) -> dict:
        self.bodies.append(body)
        return {"ok": True}

    async def send(self, **body) -> object:
        self.bodies.append(body)
        return type("Response", (), {"status_code": 200, "body": "ok"})()


HOSTILE_PIECES = [
    *"<<<<>>&&*_~`",
    "🔥",
    "e\u0301",
    "\u0301",
    " ",
    "\n",
    "x",
    "<!channel>",
    "<!here>",
    "<@U123>",
    "&lt;",
    "&amp;",
    "<http://evil.example|click>",
    "http://a.example/?a=1&b=2|x",
]
hostile_text = st.one_of(
    st.text(max_size=40),
    st.tuples(
        st.lists(st.sampled_from(HOSTILE_PIECES) | st.text(max_size=3), min_size=1, max_size=40),
        st.integers(min_value=1, max_value=2000),
    ).map(lambda t: ("".join(t[0]) * t[1])[:8000]),
)


async def every_slack_body(firing, resolved) -> list[dict]:
    """What the bot (post, threaded reply, resolved update, edit) and the webhook (post, diagnosis
    follow-up) send for a firing group and its resolution."""
    web, hook = RecordingClient(), RecordingClient()
    bot_notifier = SlackBotNotifier(web, "C0FAKE0001")
    ref = await bot_notifier.send(firing, None)
    await bot_notifier.send(resolved, Thread(ref=ref, original=firing))
    await bot_notifier.edit(firing, Sent(ref=ref))
    webhook = SlackWebhookNotifier(hook)
    await webhook.send(firing, None)
    await webhook.send(resolved, None)
    await webhook.edit(firing, Sent(ref=None))
    return web.bodies + hook.bodies


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    summary=hostile_text,
    description=hostile_text,
    value=hostile_text,
    name=hostile_text.filter(lambda s: clean(s).strip()),
    severity=hostile_text,
    fixture=st.sampled_from(["alertmanager-0.25-firing_apidown_binance.json", GROUP_OF_3, MIXED]),
    kind=st.sampled_from(["new", "escalation", "repeat"]),
)
def test_hostile_text_never_breaks_slack_s_limits_entities_or_links(
    summary, description, value, name, severity, fixture, kind
) -> None:
    labels = {"exchange": value, "zone": value, "alertname": name, "severity": severity}
    annotations = {"summary": summary, "description": description}
    diagnosis = {**GOOD_DIAGNOSIS, "diagnosis": description if clean(description).strip() else "d"}
    firing = sample_notification(
        fixture, kind=kind, labels=labels, annotations=annotations, diagnosis=diagnosis
    )
    resolved = sample_notification(
        "alertmanager-0.25-resolved_apidown_binance.json",
        notification_id=2,
        labels=labels,
        annotations=annotations,
    )
    for body in asyncio.run(every_slack_body(firing, resolved)):
        check_cuts(body)
        for block in body["attachments"][0]["blocks"]:
            for field in block.get("fields", []):
                assert len(field["text"]) <= 2000, "Slack's limit for a field"
