import asyncio
import html
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from app.chart_process import stop_renderer
from app.formatting import clean
from app.models import (
    AlertView,
    Diagnosis,
    DiagnosisSource,
    EnrichedNotification,
    MetricContext,
)
from app.notifiers.base import NotifyError, Progress, Sent, Thread
from app.notifiers.build import build_notifiers
from app.notifiers.slack import (
    SlackBotNotifier,
    SlackWebhookNotifier,
    retry_handlers,
    slack_bot,
    slack_webhook,
)
from app.notifiers.slack_blocks import (
    MAX_BLOCKS,
    SECTION_CHARS,
    clip,
    diagnosis_message,
    escape,
    fit,
    link,
    message,
    render_blocks,
)
from tests.fakes import GOOD_DIAGNOSIS, sample_notification, with_new, with_series
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


def settings_for(make_settings, slack: FakeSlack, **overrides):
    values = {
        "slack_bot_token": FAKE_SLACK_TOKEN,
        "slack_channel": slack.channel_id,
        "slack_api_url": slack.api_url,
    }
    return make_settings(**{**values, **overrides})


async def test_the_bot_built_from_settings_retries_a_rate_limit_and_sends_once(
    make_settings, slack
) -> None:
    notifier = slack_bot(settings_for(make_settings, slack))
    assert notifier is not None
    slack.fail_next(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "0"})
    slack.fail_next(503, {"ok": False, "error": "service_unavailable"})
    try:
        await notifier.send(sample_notification(), None)
    finally:
        await notifier.close()
    assert [r.method for r in slack.requests] == ["chat.postMessage"] * 3
    assert len(slack.messages) == 1


@pytest.mark.parametrize("charts", [True, False])
async def test_the_bot_built_from_settings_attaches_charts_as_configured(
    make_settings, slack, charts: bool
) -> None:
    notifier = slack_bot(settings_for(make_settings, slack, charts=charts))
    assert notifier is not None
    n = with_series(sample_notification())
    try:
        ref = await notifier.send(n, None)
        await notifier.attach(n, ref, None)
    finally:
        await notifier.close()
        await stop_renderer()  # drawn in a process of its own: none left behind
    assert len(slack.files) == (1 if charts else 0)


@pytest.mark.parametrize("secret", ["fake-signing-secret", None])
async def test_the_bot_built_from_settings_shows_buttons_only_with_slack_buttons_on(
    make_settings, slack, secret: str | None
) -> None:
    settings = settings_for(
        make_settings, slack, slack_signing_secret=secret, alertmanager_url="http://127.0.0.1:9"
    )
    notifier = slack_bot(settings)
    assert notifier is not None
    try:
        await notifier.send(sample_notification(), None)
    finally:
        await notifier.close()
    [posted] = slack.messages.values()
    blocks = posted["attachments"][0]["blocks"]
    assert (
        any(b["type"] == "actions" for b in blocks)
        is settings.slack_buttons
        is (secret is not None)
    )


async def test_the_webhook_built_from_settings_retries_a_server_error_over_one_connection(
    make_settings, slack
) -> None:
    url = f"{slack.url}/services/T0/B0/fake"
    notifier = slack_webhook(make_settings(slack_webhook_url=url))
    assert notifier is not None
    assert slack_bot(make_settings(slack_webhook_url=url)) is None
    assert slack_webhook(settings_for(make_settings, slack, slack_webhook_url=url)) is None
    slack.fail_next(503, {"ok": False, "error": "service_unavailable"})
    try:
        for _ in range(2):
            await notifier.send(sample_notification(), None)
    finally:
        await notifier.close()
    assert len(slack.webhook_posts) == 2
    assert len(slack.requests) == 3 and len({r.peer for r in slack.requests}) == 1, "one session"


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


# Exact rendering of hand-built notifications: every word and mark a channel reader sees.

START = datetime(2026, 10, 21, 10, 19, 26, tzinfo=UTC)
SLACK_MAX_BLOCKS = 50  # Slack's documented limit per message
SLACK_HEADER_LIMIT = 150  # Slack's documented limit for a header's plain text
MARK = "… [shortened]"


def view(
    name: str = "APIDown",
    *,
    status: str = "firing",
    labels: dict[str, str] | None = None,
    summary: str = "",
    description: str = "",
    context: MetricContext | None = None,
    starts_at: datetime | None = START,
    ends_at: datetime | None = None,
    fingerprint: str = "",
    runbook_url: str | None = None,
) -> AlertView:
    return AlertView(
        name=name,
        status=status,
        severity="critical",
        identifying_labels={"exchange": "binance"} if labels is None else labels,
        summary=summary,
        description=description,
        context=context,
        starts_at=starts_at,
        ends_at=ends_at,
        fingerprint=fingerprint,
        runbook_url=runbook_url,
    )


def built(
    firing: list[AlertView] = (),
    resolved: list[AlertView] = (),
    *,
    kind: str = "new",
    status: str = "firing",
    severity: str = "critical",
    title: str = "APIDown on binance",
    diagnosis: Diagnosis | None = None,
    source: DiagnosisSource | None = None,
    omitted: int = 0,
    silence_url: str | None = None,
) -> EnrichedNotification:
    return EnrichedNotification(
        group_id="g",
        status=status,
        kind=kind,
        title=title,
        severity=severity,
        firing=list(firing),
        resolved=list(resolved),
        omitted_alerts=omitted,
        diagnosis=diagnosis,
        source=source or DiagnosisSource(kind="llm", model="deepseek-chat"),
        silence_url=silence_url,
        created_at=START + timedelta(hours=1),
    )


CONTEXT = MetricContext(
    expr="api_health_status",
    current=0,
    minimum=0,
    maximum=1,
    mean=0.5,
    change=-1,
    sparkline="█▁",
    window_minutes=30,
    graph_url="http://prom.example/graph?a=1&b=2",
)


def texts(blocks: list[dict]) -> list[str]:
    return [b["text"]["text"] for b in blocks if b["type"] == "section" and "text" in b]


def test_an_alert_section_reads_name_labels_summary_description_metrics_and_graph_link() -> None:
    n = built(
        [
            view(
                labels={"exchange": "binance", "zone": "<eu>"},
                summary="API <down>",
                description="for 30s & counting",
                context=CONTEXT,
            )
        ],
        kind="new",
    )
    [section] = [t for t in texts(blocks_of(message(n))) if t.startswith("*APIDown*")]
    assert section == (
        "*APIDown* `exchange=binance` `zone=&lt;eu&gt;`\n"
        "API &lt;down&gt;\n"
        "_for 30s &amp; counting_\n"
        "`api_health_status`  now *0* · min 0 · max 1 · mean 0.5 · Δ -1 over 30m  `█▁`\n"
        "<http://prom.example/graph?a=1&amp;b=2|📈 graph>"
    )


def test_an_alert_without_summary_description_or_context_is_one_line() -> None:
    n = built([view()])
    assert texts(blocks_of(message(n)))[0] == "*APIDown* `exchange=binance`"


def test_an_alert_whose_metrics_are_unavailable_says_why_escaped_and_keeps_its_graph() -> None:
    context = MetricContext(unavailable="query <failed> & timed out", graph_url="http://p/g")
    section = texts(blocks_of(message(built([view(context=context)]))))[0]
    assert section == (
        "*APIDown* `exchange=binance`\n"
        "metrics unavailable: query &lt;failed&gt; &amp; timed out\n"
        "<http://p/g|📈 graph>"
    )


def test_alert_summary_description_and_expression_are_shortened_to_300_800_and_200() -> None:
    context = CONTEXT.model_copy(update={"expr": "e" * 201, "graph_url": None})
    alert = view(summary="s" * 301, description="d" * 801, context=context)
    lines = texts(blocks_of(message(built([alert]))))[0].split("\n")
    assert lines[1] == "s" * (300 - len(MARK)) + MARK
    assert lines[2] == "_" + "d" * (800 - len(MARK)) + MARK + "_"
    assert lines[3].startswith("`" + "e" * (200 - len(MARK)) + MARK + "`  now *0*")
    whole = view(summary="s" * 300, description="d" * 800, context=CONTEXT)
    lines = texts(blocks_of(message(built([whole]))))[0].split("\n")
    assert lines[1] == "s" * 300 and lines[2] == "_" + "d" * 800 + "_"


def test_fields_show_escaped_severity_start_duration_and_counts() -> None:
    n = built([view()], [view("Old", status="resolved", ends_at=START)], omitted=3)
    n = n.model_copy(update={"severity": "<!channel> & co"})
    fields = [f["text"] for f in blocks_of(message(n))[1]["fields"]]
    assert fields[0] == "*Severity*\n&lt;!channel&gt; &amp; co"
    assert fields[1] == "*Started*\n2026-10-21 10:19:26 UTC"
    assert fields[2].startswith("*Firing for*\n")
    assert fields[3] == "*Alerts*\n1 firing, 1 resolved, 3 more"


def test_a_channel_ping_as_severity_never_pings_anywhere_in_the_message() -> None:
    n = built([view()], severity="<!channel>")
    payload = message(n)
    assert payload["text"] == "🔥 FIRING: APIDown on binance (&lt;!channel&gt;)"
    for text in all_text(payload):
        assert "<!channel>" not in text


def test_a_long_severity_is_shortened_to_100_characters_after_escaping() -> None:
    n = built([view()], severity="a" * 120)
    severity = blocks_of(message(n))[1]["fields"][0]["text"].removeprefix("*Severity*\n")
    assert severity == "a" * (100 - len(MARK)) + MARK
    n = built([view()], severity="<" * 60)
    severity = blocks_of(message(n))[1]["fields"][0]["text"].removeprefix("*Severity*\n")
    assert len(severity) <= 100 and severity.endswith(MARK)
    assert "&" not in ENTITY.sub("", severity) and "<" not in severity


def test_a_group_with_only_resolved_alerts_starts_at_its_first_resolved_alert() -> None:
    n = built([], [view("Old", status="resolved", ends_at=START + timedelta(seconds=6))])
    fields = [f["text"] for f in render_blocks(n)[1]["fields"]]
    assert fields[1] == "*Started*\n2026-10-21 10:19:26 UTC"


def test_a_group_without_alerts_has_an_unknown_start() -> None:
    fields = [f["text"] for f in render_blocks(built())[1]["fields"]]
    assert fields[1] == "*Started*\nunknown"
    assert fields[2] == "*Firing for*\nunknown"
    assert fields[3] == "*Alerts*\n0 firing, 0 resolved"


def test_the_resolved_original_fires_until_its_lead_alert_ended() -> None:
    lead = view(fingerprint="lead")
    other = view("Other", fingerprint="other")
    resolution = built(
        [],
        [
            view(status="resolved", fingerprint="other", ends_at=START + timedelta(hours=2)),
            view(status="resolved", fingerprint="lead", ends_at=START + timedelta(minutes=5)),
        ],
        kind="resolved",
        status="resolved",
    )
    blocks = render_blocks(built([lead, other]), resolution=resolution)
    fields = [f["text"] for f in blocks[1]["fields"]]
    assert blocks[0]["text"]["text"] == "✅ RESOLVED: APIDown on binance"
    assert fields[2] == "*Fired for*\n5m"
    assert fields[3] == "*Alerts*\n0 firing, 2 resolved"


def test_without_its_lead_alert_the_original_fires_until_the_latest_end() -> None:
    resolution = built(
        [],
        [
            view(status="resolved", fingerprint="a", ends_at=START + timedelta(minutes=7)),
            view(status="resolved", fingerprint="b", ends_at=START + timedelta(minutes=3)),
            view(status="resolved", fingerprint="c", ends_at=None),
        ],
        kind="resolved",
        status="resolved",
        omitted=2,
    )
    fields = [f["text"] for f in render_blocks(built([view()]), resolution=resolution)[1]["fields"]]
    assert fields[2] == "*Fired for*\n7m"
    assert fields[3] == "*Alerts*\n0 firing, 3 resolved, 2 more"


def test_without_any_end_the_original_fires_until_the_resolution_was_made() -> None:
    resolution = built([], [view(status="resolved", ends_at=None)], status="resolved")
    fields = [f["text"] for f in render_blocks(built([view()]), resolution=resolution)[1]["fields"]]
    assert fields[2] == "*Fired for*\n1h"


def test_resolved_alerts_in_a_full_message_are_one_escaped_line_each() -> None:
    gone = view(
        "<Gone>",
        status="resolved",
        labels={"a": "<b>"},
        ends_at=START + timedelta(seconds=4),
    )
    blocks = blocks_of(message(built([view()], [gone])))
    assert texts(blocks)[1] == (
        "*✅ Resolved*\n✅ *&lt;Gone&gt;* `a=&lt;b&gt;` resolved, fired for 4s"
    )


def test_a_full_message_has_no_resolved_section_when_nothing_resolved() -> None:
    assert not any("Resolved" in t for t in texts(blocks_of(message(built([view()])))))


def test_hidden_alerts_are_counted_in_a_context_block_after_the_alerts() -> None:
    n = built([view(f"A{i}") for i in range(12)], omitted=1)
    blocks = blocks_of(message(n))
    [hidden] = [b for b in blocks if b["type"] == "context" and "more alerts" in str(b)]
    assert hidden["elements"] == [{"type": "mrkdwn", "text": "… and 3 more alerts"}]
    assert sum(t.startswith("*A") for t in texts(blocks)) == 10
    assert blocks.index(hidden) == 2 + 10


def test_no_count_of_hidden_alerts_when_all_are_shown() -> None:
    blocks = blocks_of(message(built([view(f"A{i}") for i in range(10)])))
    assert "more alerts" not in str(blocks)


DIAGNOSIS = Diagnosis(
    diagnosis="Cause <x>",
    impact="No orders & no data",
    action_items=["first", "second"],
    rollback_plan="Revert",
    estimated_recovery_time="15 min",
)


def test_the_diagnosis_follows_a_divider_in_five_titled_escaped_sections() -> None:
    blocks = blocks_of(message(built([view()], diagnosis=DIAGNOSIS)))
    divider = blocks.index({"type": "divider"})
    assert texts(blocks[divider + 1 : divider + 6]) == [
        "*🩺 Diagnosis*\nCause &lt;x&gt;",
        "*💥 Impact*\nNo orders &amp; no data",
        "*🛠 Action items*\n1. first\n2. second",
        "*↩️ Rollback plan*\nRevert",
        "*⏱ Recovery estimate*\n15 min",
    ]


def test_a_message_without_a_diagnosis_has_no_divider() -> None:
    assert {"type": "divider"} not in blocks_of(message(built([view()])))


def test_the_footer_names_the_source_and_links_graph_silence_and_runbook() -> None:
    alert = view(context=CONTEXT, runbook_url="https://runbooks.example/api?x=<1>")
    n = built([alert], silence_url="http://am.example/#/silences/new?filter=a|b")
    footer = blocks_of(message(n))[-1]
    assert footer == {
        "type": "context",
        "elements": [
            {"type": "mrkdwn", "text": "Diagnosis source: model deepseek-chat"},
            {
                "type": "mrkdwn",
                "text": "<http://prom.example/graph?a=1&amp;b=2|📈 Graph>"
                "  ·  <http://am.example/#/silences/new?filter=a%7Cb|🔕 Silence>"
                "  ·  <https://runbooks.example/api?x=&lt;1&gt;|📖 Runbook>",
            },
        ],
    }


def test_the_footer_graph_comes_from_the_first_firing_alert_that_has_one() -> None:
    no_graph = view("NoGraph", context=CONTEXT.model_copy(update={"graph_url": None}))
    graph = view("Graph", context=CONTEXT.model_copy(update={"graph_url": "http://g/2"}))
    footer = blocks_of(message(built([view("Bare"), no_graph, graph])))[-1]
    assert footer["elements"][1]["text"] == "<http://g/2|📈 Graph>"


def test_a_footer_without_links_is_the_source_alone() -> None:
    footer = blocks_of(message(built([view()])))[-1]
    assert footer["elements"] == [
        {"type": "mrkdwn", "text": "Diagnosis source: model deepseek-chat"}
    ]


@pytest.mark.parametrize(
    "runbook",
    ["javascript:alert(1)", "slack://open", "ftp://files.example/r", "<!channel>", "//x.example"],
)
def test_a_runbook_url_that_is_not_http_never_becomes_a_link(runbook: str) -> None:
    payload = message(sample_notification(annotations={"runbook_url": runbook}))
    assert "Runbook" not in "\n".join(all_text(payload))
    check_cuts(payload)


def test_an_http_runbook_url_becomes_a_link() -> None:
    payload = message(sample_notification(annotations={"runbook_url": "https://rb.example/a"}))
    assert "<https://rb.example/a|📖 Runbook>" in "\n".join(all_text(payload))


def test_a_huge_diagnosis_keeps_to_50_blocks_and_keeps_the_footer_last() -> None:
    huge = DIAGNOSIS.model_copy(update={"diagnosis": "word " * 60_000})
    blocks = blocks_of(message(built([view()], diagnosis=huge)))
    assert len(blocks) == SLACK_MAX_BLOCKS
    assert blocks[-1]["type"] == "context"
    assert blocks[-1]["elements"][0]["text"] == "Diagnosis source: model deepseek-chat"
    for text in texts(blocks):
        assert len(text) <= SLACK_SECTION_LIMIT


def test_the_diagnosis_follow_up_keeps_to_50_blocks_with_its_source_last() -> None:
    huge = DIAGNOSIS.model_copy(update={"diagnosis": "word " * 60_000})
    payload = diagnosis_message(built([view()], diagnosis=huge, title="<!here> down"))
    blocks = blocks_of(payload)
    assert len(blocks) == SLACK_MAX_BLOCKS
    assert blocks[0]["text"] == {
        "type": "plain_text",
        "text": "🩺 AI diagnosis: &lt;!here&gt; down",
    }
    assert blocks[-1] == {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": "Diagnosis source: model deepseek-chat"}],
    }
    assert payload["text"] == "🩺 AI diagnosis: &lt;!here&gt; down"
    assert payload["attachments"][0]["color"] == "#D32F2F"


def test_a_short_diagnosis_follow_up_is_header_diagnosis_and_source() -> None:
    blocks = blocks_of(diagnosis_message(built([view()], diagnosis=DIAGNOSIS)))
    assert [b["type"] for b in blocks] == ["header", "divider", *["section"] * 5, "context"]


def impact_pieces(impact: str) -> list[str]:
    """The sections that carry the diagnosis's impact, its title taken off the first."""
    diagnosis = DIAGNOSIS.model_copy(update={"impact": impact})
    sections = texts(blocks_of(message(built([view()], diagnosis=diagnosis))))
    start = next(i for i, t in enumerate(sections) if t.startswith("*💥 Impact*\n"))
    end = next(i for i, t in enumerate(sections) if t.startswith("*🛠 Action items*"))
    for piece in sections[start:end]:
        assert len(piece) <= SLACK_SECTION_LIMIT
    return [sections[start].removeprefix("*💥 Impact*\n"), *sections[start + 1 : end]]


def test_a_diagnosis_section_is_continued_at_a_word_break_without_losing_text() -> None:
    words = " ".join(f"w{i}" for i in range(2000))
    pieces = impact_pieces(words)
    assert len(pieces) > 1
    assert "".join(pieces) == words
    for piece in pieces[:-1]:
        assert piece.endswith(" ") and len(piece) > SLACK_SECTION_LIMIT - 30


def test_a_diagnosis_section_is_continued_at_a_line_break_when_there_is_one() -> None:
    lines = "\n".join("x" * 99 for _ in range(50))
    pieces = impact_pieces(lines)
    assert "".join(pieces) == lines
    for piece in pieces[:-1]:
        assert piece.endswith("\n")


def test_a_text_without_breaks_fills_the_first_section_to_slack_s_limit() -> None:
    text = "x" * 7000
    pieces = impact_pieces(text)
    assert "".join(pieces) == text
    assert len(pieces) == 3
    # filled to within a character of Slack's limit, not cut early
    assert SLACK_SECTION_LIMIT - 1 <= len("*💥 Impact*\n" + pieces[0]) <= SLACK_SECTION_LIMIT
    assert len(pieces[1]) == len(pieces[0])


def test_a_text_that_fills_its_section_exactly_stays_one_section() -> None:
    text = "x" * (SLACK_SECTION_LIMIT - len("*💥 Impact*\n"))
    assert impact_pieces(text) == [text]


def test_a_break_in_the_first_half_of_a_section_is_not_used() -> None:
    early = "y" * 1200 + " " + "x" * 6000
    pieces = impact_pieces(early)
    assert "".join(pieces) == early
    assert SLACK_SECTION_LIMIT - 2 <= len("*💥 Impact*\n" + pieces[0]) <= SLACK_SECTION_LIMIT


def test_a_break_just_past_half_of_a_section_is_used() -> None:
    late = "y" * 1600 + " " + "x" * 6000
    pieces = impact_pieces(late)
    assert pieces[0] == "y" * 1600 + " "
    assert "".join(pieces) == late


def test_an_empty_diagnosis_field_keeps_its_titled_section() -> None:
    diagnosis = DIAGNOSIS.model_copy(update={"action_items": []})
    sections = texts(blocks_of(message(built([view()], diagnosis=diagnosis))))
    assert "*🛠 Action items*\n" in sections


def test_an_escaped_diagnosis_section_is_filled_close_to_the_limit_and_never_past_it() -> None:
    text = "<" * 5000  # 20,000 characters once escaped, no word breaks
    pieces = impact_pieces(text)
    assert "".join(pieces) == "&lt;" * 5000
    for piece in pieces[:-1]:
        assert len(piece) >= SLACK_SECTION_LIMIT - 30


@pytest.mark.parametrize(
    ("kind", "status", "severity", "expected"),
    [
        ("new", "firing", "critical", "#D32F2F"),
        ("new", "firing", "error", "#D32F2F"),
        ("new", "firing", "warning", "#F9A825"),
        ("new", "firing", "info", "#1976D2"),
        ("new", "firing", "page-me", "#757575"),
        ("resolved", "resolved", "critical", "#2E7D32"),
        ("resolved", "firing", "warning", "#F9A825"),
        ("repeat", "resolved", "info", "#1976D2"),
    ],
)
def test_the_colour_bar_follows_severity_until_the_whole_group_resolved(
    kind: str, status: str, severity: str, expected: str
) -> None:
    n = built([view()], kind=kind, status=status, severity=severity)
    assert message(n)["attachments"][0]["color"] == expected


def test_repeat_and_resolved_get_the_short_reply_and_new_and_escalation_the_full_message() -> None:
    for kind in ("new", "escalation"):
        assert blocks_of(message(built([view()], kind=kind)))[0]["type"] == "header"
    for kind in ("repeat", "resolved"):
        assert blocks_of(message(built([view()], kind=kind)))[0]["type"] == "section"


def test_the_short_reply_lists_resolved_then_firing_alerts_escaped() -> None:
    gone = view(
        "<Gone>", status="resolved", labels={"a": "&"}, ends_at=START + timedelta(seconds=6)
    )
    still = view("Still", starts_at=None)
    n = built([still], [gone], kind="resolved", status="firing", title="<!here>", omitted=2)
    assert texts(blocks_of(message(n))) == [
        "*✅ PARTLY RESOLVED: &lt;!here&gt;*\n"
        "✅ &lt;Gone&gt; `a=&amp;` resolved, fired for 6s\n"
        "🔥 Still `exchange=binance` still firing, for unknown\n"
        "… and 2 more alerts"
    ]


def test_a_short_reply_that_fills_a_section_exactly_stays_one_section() -> None:
    head = "*🔁 STILL FIRING: T*"
    line_without_name = "🔥  `exchange=binance` still firing, for unknown"
    name = "n" * (SLACK_SECTION_LIMIT - len(head) - 1 - len(line_without_name))
    n = built([view(name, starts_at=None)], kind="repeat", title="T")
    [section] = texts(blocks_of(message(n)))
    assert len(section) == SLACK_SECTION_LIMIT
    longer = built([view(name + "n", starts_at=None)], kind="repeat", title="T")
    assert texts(blocks_of(message(longer))) == [
        head,
        f"🔥 {name}n `exchange=binance` still firing, for unknown",
    ]


def test_the_fallback_text_is_escaped_and_at_most_300_characters() -> None:
    n = built([view()], title="<" * 400)
    text = message(n)["text"]
    assert len(text) <= 300 and text.endswith(MARK)
    assert "<" not in text and "&" not in ENTITY.sub("", text)


def test_a_long_header_is_cut_to_slack_s_limit() -> None:
    n = built([view()], title="t" * 300)
    header = blocks_of(message(n))[0]["text"]["text"]
    assert header == ("🔥 FIRING: " + "t" * 300)[: SLACK_HEADER_LIMIT - len(MARK)] + MARK


def test_a_header_that_fits_exactly_is_not_shortened() -> None:
    title = "t" * (SLACK_HEADER_LIMIT - len("🔥 FIRING: "))
    assert (
        blocks_of(message(built([view()], title=title)))[0]["text"]["text"] == f"🔥 FIRING: {title}"
    )


def test_an_alert_section_cut_at_the_limit_backs_off_a_half_link() -> None:
    context = CONTEXT.model_copy(update={"graph_url": "http://g.example/" + "p" * 100})
    alert = view(
        summary="s" * 300, description="d" * 800, labels={f"k{i}": "v" * 120 for i in range(8)}
    )
    alert = alert.model_copy(update={"context": context, "name": "N" * 1700})
    section = texts(blocks_of(message(built([alert]))))[0]
    assert len(section) <= SLACK_SECTION_LIMIT
    assert section.endswith(MARK)
    assert "<" not in OUR_LINK.sub("", section), "the graph link is dropped whole, not cut"


# The notifiers (app/notifiers/slack.py): what goes to Slack's API, retries and error mapping.


def recorded_steps() -> tuple[Progress, list[tuple[str, str | None]]]:
    steps: list[tuple[str, str | None]] = []

    async def record(name: str, ref: str | None) -> None:
        steps.append((name, ref))

    return Progress(record=record), steps


async def test_a_new_message_goes_to_the_channel_unpinged_and_unfurled_as_step_post() -> None:
    web = RecordingClient()
    progress, steps = recorded_steps()
    n = sample_notification()
    ref = await SlackBotNotifier(web, "C0FAKE0001").send(n, None, progress)
    assert ref == "C0FAKE0001:1.0"
    assert steps == [("post", ref)]
    [body] = web.bodies
    assert body == {
        **message(n),
        "channel": "C0FAKE0001",
        "link_names": False,
        "unfurl_links": False,
        "unfurl_media": False,
    }


@pytest.mark.parametrize("kind", ["repeat", "resolved"])
async def test_a_follow_up_that_is_not_an_escalation_replies_in_the_thread_without_broadcast(
    kind: str,
) -> None:
    web = RecordingClient()
    progress, steps = recorded_steps()
    n = built([view()], kind=kind, status="firing")
    ref = await SlackBotNotifier(web, "C0FAKE0001").send(
        n, Thread(ref="C0OTHER:1700.1", original=built([view()])), progress
    )
    [body] = web.bodies
    assert body["channel"] == "C0OTHER" and body["thread_ts"] == "1700.1"
    assert body["reply_broadcast"] is False
    assert body["link_names"] is False
    assert steps == [("reply", ref)], "a group still firing does not update the original"


async def test_a_resolved_reply_without_the_original_does_not_update_anything() -> None:
    web = RecordingClient()
    n = built([], [view(status="resolved")], kind="resolved", status="resolved")
    await SlackBotNotifier(web, "C0FAKE0001").send(n, Thread(ref="C1:2.0"))
    assert len(web.bodies) == 1


async def test_resolving_updates_the_original_in_place_as_a_step_of_its_own() -> None:
    web = RecordingClient()
    progress, steps = recorded_steps()
    original = built([view()], diagnosis=DIAGNOSIS, title="<!channel> down")
    resolution = built(
        [], [view(status="resolved", ends_at=START)], kind="resolved", status="resolved"
    )
    await SlackBotNotifier(web, "C0FAKE0001").send(
        resolution, Thread(ref="C1:2.0", original=original), progress
    )
    assert [name for name, _ in steps] == ["reply", "update"]
    update = web.bodies[1]
    assert update["channel"] == "C1" and update["ts"] == "2.0"
    assert update["text"] == "✅ RESOLVED: &lt;!channel&gt; down"
    assert update["attachments"] == [
        {"color": "#2E7D32", "blocks": render_blocks(original, resolution=resolution)}
    ]


async def test_resolving_before_the_ai_diagnosis_says_so_in_the_original() -> None:
    web = RecordingClient()
    preliminary = DiagnosisSource(kind="rules", reason="timeout", preliminary=True)
    original = built([view()], diagnosis=DIAGNOSIS, source=preliminary)
    resolution = built([], [view(status="resolved")], kind="resolved", status="resolved")
    await SlackBotNotifier(web, "C0FAKE0001").send(
        resolution, Thread(ref="C1:2.0", original=original)
    )
    footer = web.bodies[1]["attachments"][0]["blocks"][-1]["elements"][0]["text"]
    assert footer == "Diagnosis source: rule-based fallback: resolved before the AI diagnosis"


async def test_a_final_original_keeps_its_diagnosis_source_when_resolved() -> None:
    web = RecordingClient()
    original = built([view()], diagnosis=DIAGNOSIS)
    resolution = built([], [view(status="resolved")], kind="resolved", status="resolved")
    await SlackBotNotifier(web, "C0FAKE0001").send(
        resolution, Thread(ref="C1:2.0", original=original)
    )
    footer = web.bodies[1]["attachments"][0]["blocks"][-1]["elements"][0]["text"]
    assert footer == "Diagnosis source: model deepseek-chat"


async def test_a_failed_header_update_does_not_fail_the_resolved_reply(
    slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = bot(slack)
    resolved = sample_notification(
        "alertmanager-0.25-resolved_apidown_binance.json", notification_id=2
    )
    # The original is gone: chat.update answers message_not_found.
    ref = await notifier.send(
        resolved, Thread(ref="C0FAKE0001:1699999999.000001", original=sample_notification())
    )
    assert ref is not None and ref.startswith("C0FAKE0001:")
    assert "header update failed: message_not_found" in caplog.text


async def test_slack_s_rate_limit_is_retried_three_times_then_fails_retryably(slack) -> None:
    for _ in range(5):
        slack.fail_next(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "0"})
    with pytest.raises(NotifyError) as raised:
        await bot(slack).send(sample_notification(), None)
    assert raised.value.retryable is True
    assert len(slack.requests) == 4


async def test_slack_s_server_errors_are_retried_twice_then_fail_retryably(slack) -> None:
    for _ in range(4):
        slack.fail_next(503, {"ok": False, "error": "service_unavailable"})
    with pytest.raises(NotifyError) as raised:
        await bot(slack).send(sample_notification(), None)
    assert raised.value.retryable is True
    assert raised.value.reason == "Slack API error service_unavailable (HTTP 503)"
    assert len(slack.requests) == 3


def test_the_retry_handlers_cover_connections_rate_limits_and_server_errors() -> None:
    counts = {type(h).__name__: h.max_retry_count for h in retry_handlers()}
    assert counts == {
        "AsyncConnectionErrorRetryHandler": 2,
        "AsyncRateLimitErrorRetryHandler": 3,
        "AsyncServerErrorRetryHandler": 2,
    }


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"ok": False, "error": "fatal_error"}, "Slack API error fatal_error (HTTP 200)"),
        ({"ok": False}, "Slack API error unknown_error (HTTP 200)"),
    ],
)
async def test_an_unknown_slack_error_is_retryable_and_named(slack, body, reason) -> None:
    slack.fail_next(200, body)
    with pytest.raises(NotifyError) as raised:
        await bot(slack).send(sample_notification(), None)
    assert raised.value.retryable is True
    assert raised.value.reason == reason
    assert raised.value.channel == "slack"


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("msg_too_long", "Slack rejected the message as too long"),
        ("not_in_channel", "the Slack bot is not in the channel (invite it)"),
        ("token_revoked", "Slack token was revoked"),
    ],
)
async def test_a_permanent_slack_error_is_not_retried_and_says_what_to_fix(
    slack, code: str, reason: str
) -> None:
    slack.fail_next(200, {"ok": False, "error": code})
    with pytest.raises(NotifyError) as raised:
        await bot(slack).send(sample_notification(), None)
    assert raised.value.retryable is False
    assert raised.value.channel == "slack"
    assert raised.value.reason == reason
    assert len(slack.requests) == 1


async def test_ping_names_the_bot_team_and_channel(slack) -> None:
    assert await bot(slack).ping() == "bot enricher in team FakeTeam, channel C0FAKE0001"


async def test_ping_with_a_wrong_token_says_so(slack) -> None:
    with pytest.raises(NotifyError) as raised:
        await bot(slack, token="xoxb-wrong-fake").ping()
    assert raised.value.reason == "invalid Slack token (invalid_auth)"
    assert raised.value.retryable is False


async def test_edit_updates_the_message_in_place_as_step_edit() -> None:
    web = RecordingClient()
    progress, steps = recorded_steps()
    n = sample_notification()
    ref = await SlackBotNotifier(web, "C0FAKE0001").edit(n, Sent(ref="C9:5.5"), progress)
    assert ref == "C9:5.5"
    assert steps == [("edit", "C9:5.5")]
    assert web.bodies == [{"channel": "C9", "ts": "5.5", **message(n), "link_names": False}]


@pytest.mark.parametrize("ref", [None, "", "C9", "C9:", ":5.5"])
async def test_edit_without_a_message_reference_fails_permanently_without_a_call(
    ref: str | None,
) -> None:
    web = RecordingClient()
    with pytest.raises(NotifyError) as raised:
        await SlackBotNotifier(web, "C0FAKE0001").edit(sample_notification(), Sent(ref=ref))
    assert raised.value.retryable is False
    assert raised.value.channel == "slack"
    assert raised.value.reason == f"no message to edit (ref {ref!r})"
    assert web.bodies == []


async def test_editing_a_deleted_message_fails_permanently(slack) -> None:
    with pytest.raises(NotifyError) as raised:
        await bot(slack).edit(sample_notification(), Sent(ref="C0FAKE0001:1.000001"))
    assert raised.value.retryable is False
    assert raised.value.reason == "the Slack message to edit is gone (deleted?)"


async def test_edit_of_a_posted_message_goes_through_slack(slack) -> None:
    notifier = bot(slack)
    ref = await notifier.edit(
        sample_notification(), Sent(ref=await notifier.send(sample_notification(), None))
    )
    assert slack.messages[ref.split(":")[1]]["updated"] is True


async def test_edit_when_slack_is_unreachable_is_retryable() -> None:
    client = AsyncWebClient(token=FAKE_SLACK_TOKEN, base_url="http://127.0.0.1:9/api/")
    with pytest.raises(NotifyError) as raised:
        await SlackBotNotifier(client, "C1").edit(sample_notification(), Sent(ref="C1:1.0"))
    assert raised.value.retryable is True
    assert raised.value.channel == "slack"
    assert raised.value.reason == "Slack unreachable (ClientConnectorError)"


class Session:
    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True


async def test_closing_the_bot_closes_its_http_session() -> None:
    web = RecordingClient()
    web.session = Session()
    await SlackBotNotifier(web, "C1").close()
    assert web.session.closed is True
    await SlackBotNotifier(RecordingClient(), "C1").close()  # no session: nothing to close


async def test_closing_the_webhook_closes_its_http_session() -> None:
    hook = RecordingClient()
    hook.session = Session()
    await SlackWebhookNotifier(hook).close()
    assert hook.session.closed is True
    hook.session = None
    await SlackWebhookNotifier(hook).close()


async def test_webhook_ping_does_not_post() -> None:
    hook = RecordingClient()
    assert await SlackWebhookNotifier(hook).ping() == (
        "webhook mode: configured, not probed (a probe would post a message)"
    )
    assert hook.bodies == []


async def test_webhook_send_posts_the_message_as_step_post() -> None:
    hook = RecordingClient()
    progress, steps = recorded_steps()
    n = sample_notification()
    assert await SlackWebhookNotifier(hook).send(n, Thread(ref="x"), progress) is None
    assert hook.bodies == [message(n)]
    assert steps == [("post", None)]


async def test_webhook_edit_posts_the_diagnosis_as_a_follow_up_step() -> None:
    hook = RecordingClient()
    progress, steps = recorded_steps()
    n = sample_notification()
    assert await SlackWebhookNotifier(hook).edit(n, Sent(ref=None), progress) is None
    assert hook.bodies == [diagnosis_message(n)]
    assert steps == [("follow-up", None)]


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(400, False), (403, False), (404, False), (429, True), (500, True), (503, True)],
)
async def test_webhook_errors_are_retryable_only_for_rate_limits_and_server_errors(
    slack, status: int, retryable: bool
) -> None:
    notifier = SlackWebhookNotifier(AsyncWebhookClient(f"{slack.url}/services/T0/B0/fake"))
    slack.fail_next(status, "no_service")
    with pytest.raises(NotifyError) as raised:
        await notifier.send(sample_notification(), None)
    assert raised.value.retryable is retryable
    assert raised.value.channel == "slack"
    assert raised.value.reason == f'Slack webhook answered HTTP {status}: "no_service"'


async def test_a_webhook_error_body_is_shortened_to_200_characters(slack) -> None:
    notifier = SlackWebhookNotifier(AsyncWebhookClient(f"{slack.url}/services/T0/B0/fake"))
    slack.fail_next(400, "e" * 500)
    with pytest.raises(NotifyError) as raised:
        await notifier.send(sample_notification(), None)
    body = raised.value.reason.removeprefix("Slack webhook answered HTTP 400: ")
    assert body == '"' + "e" * (200 - len(MARK) - 1) + MARK


async def test_an_unreachable_webhook_is_retryable() -> None:
    notifier = SlackWebhookNotifier(AsyncWebhookClient("http://127.0.0.1:9/services/T0/B0/fake"))
    with pytest.raises(NotifyError) as raised:
        await notifier.send(sample_notification(), None)
    assert raised.value.retryable is True
    assert raised.value.reason == "Slack webhook unreachable (ClientConnectorError)"
    assert raised.value.channel == "slack"


def test_clip_leaves_text_that_fits_exactly_alone() -> None:
    assert clip("a" * 20, 20) == "a" * 20
    assert clip("", 0) == ""


def test_clip_cuts_visibly_to_the_limit() -> None:
    assert clip("abcdefghij" * 3, 20) == "abcdefg" + MARK
    assert clip("abcdef  ghij" * 3, 21) == "abcdef" + MARK, "no space before the mark"


def test_clip_never_leaves_half_an_entity() -> None:
    assert clip("&lt;" * 10, 20) == "&lt;" + MARK
    assert clip("&amp;" + "x" * 30, 15) == MARK, "an entity at the very start goes whole"
    assert clip("ab&gt;" + "x" * 30, 19) == "ab&gt;" + MARK


def test_clip_never_leaves_half_a_link() -> None:
    assert clip("see <http://x.example/aaaaaaaaaaa|graph> now", 20) == "see" + MARK
    assert clip("<http://x.example/a|g> and more text here", 35) == "<http://x.example/a|g>" + MARK
    assert clip("<http://x.example/aaaaaaaa|graph>", 20) == MARK


def test_clip_keeps_a_closed_entity_before_an_open_link() -> None:
    text = "a &amp; b <http://x.example/" + "p" * 40 + "|g>"
    assert clip(text, 30) == "a &amp; b" + MARK


def test_link_escapes_url_and_label_and_keeps_the_url_whole() -> None:
    assert link("http://a.example/?x=1&y=<2>|z", "a<b>|&") == (
        "<http://a.example/?x=1&amp;y=&lt;2&gt;%7Cz|a&lt;b&gt;|&amp;>"
    )


def test_fit_keeps_text_that_fits_once_escaped() -> None:
    assert fit("a" * 15, 15) == "a" * 15
    assert fit("a<b", 9) == "a&lt;b"


def test_fit_shortens_until_the_escaped_form_fits() -> None:
    assert fit("a" * 16, 15) == "aa" + MARK
    for limit in range(13, 60):
        result = fit("x<&>" * 30, limit)
        assert len(result) <= limit and result.endswith(MARK)
        assert "&" not in ENTITY.sub("", result) and "<" not in result


def test_fit_keeps_the_longest_cut_whose_escaped_form_fits() -> None:
    for limit in range(14, 40):
        for text in ("x<&>" * 30, "<" * 80, "ab<" * 30):
            kept = fit(text, limit).removesuffix(MARK)
            longer = text[: len(html.unescape(kept)) + 1]
            assert len(escape(longer)) + len(MARK) > limit, (text, limit)


def test_an_alert_section_of_exactly_3000_characters_is_not_shortened() -> None:
    name = "n" * (SLACK_SECTION_LIMIT - len("** `exchange=binance`"))
    [section] = texts(blocks_of(message(built([view(name)]))))
    assert section == f"*{name}* `exchange=binance`"


def test_a_longer_alert_section_is_cut_to_exactly_3000_characters() -> None:
    [section] = texts(blocks_of(message(built([view("n" * 4000)]))))
    assert section == "*" + "n" * (SLACK_SECTION_LIMIT - 1 - len(MARK)) + MARK


def test_resolved_lines_shorten_names_and_labels_to_100_characters() -> None:
    gone = view("N" * 150, status="resolved", labels={"k": "v" * 120}, ends_at=START)
    [_, resolved] = texts(blocks_of(message(built([view()], [gone]))))
    assert resolved == (
        "*✅ Resolved*\n✅ *"
        + "N" * (100 - len(MARK))
        + MARK
        + "* `k="
        + "v" * (98 - len(MARK))
        + MARK
        + "` resolved, fired for 0s"
    )


def test_a_short_reply_with_a_huge_title_starts_with_its_headline_cut_to_3000() -> None:
    n = built([view(starts_at=None)], kind="repeat", title="t" * 5000)
    sections = texts(blocks_of(message(n)))
    assert len(sections[0]) == SLACK_SECTION_LIMIT
    assert sections[0].startswith("*🔁 STILL FIRING: ttt") and sections[0].endswith(MARK)
    assert sections[1] == "🔥 APIDown `exchange=binance` still firing, for unknown"


def test_the_fallback_text_of_a_long_title_is_cut_to_exactly_300_characters() -> None:
    text = message(built([view()], title="t" * 400))["text"]
    assert text == ("🔥 FIRING: " + "t" * 400)[: 300 - len(MARK)] + MARK


def test_the_diagnosis_follow_up_of_a_long_title_keeps_to_the_header_and_text_limits() -> None:
    payload = diagnosis_message(built([view()], diagnosis=DIAGNOSIS, title="t" * 400))
    head = "🩺 AI diagnosis: " + "t" * 400
    assert blocks_of(payload)[0]["text"]["text"] == head[: SLACK_HEADER_LIMIT - len(MARK)] + MARK
    assert payload["text"] == head[: 300 - len(MARK)] + MARK


async def test_the_resolved_update_text_is_cut_to_300_characters() -> None:
    web = RecordingClient()
    original = built([view()], title="t" * 400)
    resolution = built([], [view(status="resolved")], kind="resolved", status="resolved")
    await SlackBotNotifier(web, "C1").send(resolution, Thread(ref="C1:2.0", original=original))
    assert web.bodies[1]["text"] == ("✅ RESOLVED: " + "t" * 400)[: 300 - len(MARK)] + MARK


HOSTILE_CHARS = st.sampled_from([*"<<<>>>&&&**__``~|", "🔥", "\u0301", "e\u0301", " ", "\n", "a"])
hostile_chars_text = st.lists(HOSTILE_CHARS, max_size=400).map("".join)
hostile_label = st.lists(HOSTILE_CHARS, min_size=1, max_size=40).map("".join)


@settings(max_examples=200, deadline=None)
@given(
    pieces=st.lists(
        st.one_of(
            hostile_chars_text.map(escape),
            st.builds(link, st.just("http://g.example/?a=1&b=2"), hostile_label),
        ),
        max_size=6,
    ),
    limit=st.integers(min_value=len(MARK), max_value=600),
)
def test_clip_of_escaped_text_and_links_never_exceeds_the_limit_or_cuts_one(
    pieces: list[str], limit: int
) -> None:
    text = " ".join(pieces)
    clipped = clip(text, limit)
    assert len(clipped) <= limit
    if len(text) <= limit:
        assert clipped == text
        return
    assert clipped.endswith(MARK)
    kept = clipped.removesuffix(MARK)
    assert text.startswith(kept)
    assert "&" not in ENTITY.sub("", OUR_LINK.sub("", kept))
    assert "<" not in OUR_LINK.sub("", kept) and ">" not in OUR_LINK.sub("", kept)


@settings(max_examples=200, deadline=None)
@given(text=hostile_chars_text, limit=st.integers(min_value=len(MARK), max_value=300))
def test_fit_of_hostile_text_is_escaped_within_the_limit(text: str, limit: int) -> None:
    fitted = fit(text, limit)
    assert len(fitted) <= limit
    assert "<" not in fitted and ">" not in fitted
    assert "&" not in ENTITY.sub("", fitted)
    if len(escape(text)) <= limit:
        assert fitted == escape(text)
    else:
        assert fitted.endswith(MARK)


def test_a_break_at_exactly_half_of_a_section_is_not_used() -> None:
    # 7,000 plain characters are first cut one short of the chunk's limit; a break at half that
    # cut is too early to use
    first_cut = SLACK_SECTION_LIMIT - len("*💥 Impact*\n") - 1
    half = first_cut // 2
    text = "y" * half + " " + "x" * (7000 - half - 1)
    pieces = impact_pieces(text)
    assert "".join(pieces) == text
    assert len(pieces[0]) == first_cut


def test_a_full_message_opens_with_a_plain_text_header_and_a_fields_section() -> None:
    blocks = blocks_of(message(built([view()])))
    assert blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "🔥 FIRING: APIDown on binance"},
    }
    assert blocks[1]["type"] == "section"
    firing_for = blocks[1]["fields"][2]["text"]
    assert firing_for.startswith("*Firing for*\n") and "unknown" not in firing_for


def test_resolved_lines_separate_labels_with_single_spaces() -> None:
    gone = view("Gone", status="resolved", labels={"a": "1", "b": "2"}, ends_at=START)
    resolved = texts(blocks_of(message(built([view()], [gone]))))[1]
    assert "✅ *Gone* `a=1` `b=2` resolved" in resolved


@pytest.mark.parametrize("limit", [40, 150, 3000])
def test_fit_keeps_as_much_as_fits_when_escaping_grows_the_text(limit: int) -> None:
    fitted = fit("a<&>" * 2000, limit)
    assert limit - 12 <= len(fitted) <= limit
