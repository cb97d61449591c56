import json
from datetime import timedelta
from html.parser import HTMLParser
from urllib.parse import parse_qs

import httpx
import pytest
import respx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from telegram import Bot

from app.formatting import clean
from app.notifiers.base import NotifyError, Progress, Thread
from app.notifiers.telegram import LIMIT, Line, TelegramNotifier, pack, render, units
from app.notifiers.telegram_calls import _seconds
from tests.fakes import GOOD_DIAGNOSIS, sample_notification, with_new

TOKEN = "123456:FAKE-telegram-token-for-tests"
API = f"https://api.telegram.test/bot{TOKEN}"
ALLOWED_TAGS = {"b", "i", "u", "s", "code", "pre", "a"}


class TelegramHTML(HTMLParser):
    """Checks what Telegram's parser demands: known tags, properly nested, closed."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.text = ""

    def handle_starttag(self, tag, attrs) -> None:
        assert tag in ALLOWED_TAGS, f"unsupported tag {tag}"
        self.stack.append(tag)

    def handle_endtag(self, tag) -> None:
        assert self.stack and self.stack.pop() == tag, f"unbalanced </{tag}>"

    def handle_data(self, data) -> None:
        self.text += data


def valid(part: str) -> str:
    parser = TelegramHTML()
    parser.feed(part)
    parser.close()
    assert not parser.stack, f"unclosed {parser.stack}"
    assert units(part) <= LIMIT
    return parser.text


def sent(message_id: int = 1) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "ok": True,
            "result": {
                "message_id": message_id,
                "date": 1700000000,
                "chat": {"id": -100123, "type": "supergroup"},
                "text": "x",
            },
        },
    )


def error(code: int, description: str, **parameters) -> httpx.Response:
    body = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return httpx.Response(code, json=body)


def notifier(thread_id: int | None = None) -> TelegramNotifier:
    async def no_sleep(_: float) -> None:
        return None

    bot = Bot(TOKEN, base_url="https://api.telegram.test/bot")
    return TelegramNotifier(bot, "-100123", thread_id, sleep=no_sleep)


def form(request: httpx.Request) -> dict:
    if request.headers.get("content-type", "").startswith("application/json"):
        return json.loads(request.content)
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


async def test_firing_message_is_html_with_everything_the_contract_asks_for(
    respx_mock: respx.MockRouter,
) -> None:
    route = respx_mock.post(f"{API}/sendMessage").mock(return_value=sent(42))
    ref = await notifier(thread_id=7).send(sample_notification(), None)
    assert ref == "42"
    body = form(route.calls[0].request)
    assert body["parse_mode"] == "HTML" and body["chat_id"] == "-100123"
    assert body["message_thread_id"] == "7"
    text = valid(body["text"])
    for needle in (
        "FIRING: APIDown on binance",
        "exchange=binance",
        "binance API is down",
        "Diagnosis:",
        "Impact:",
        "1. Check the exchange",
        "Rollback:",
        "Recovery:",
        "now 0",
        "██▁▁",
        "rule-based fallback: no LLM API key configured",
        "Silence in Alertmanager",
    ):
        assert needle in text, needle


async def test_resolved_replies_to_the_original_message(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(f"{API}/sendMessage").mock(return_value=sent(43))
    resolved = sample_notification("alertmanager-0.25-resolved_apidown_binance.json")
    await notifier().send(resolved, Thread(ref="42"))
    body = form(route.calls[0].request)
    assert json.loads(body["reply_parameters"])["message_id"] == 42
    text = valid(body["text"])
    assert "RESOLVED: APIDown on binance" in text and "fired for 6s" in text


@pytest.mark.parametrize("retry_after", [1, 30])
async def test_rate_limit_is_honoured_then_sent_once(
    respx_mock: respx.MockRouter, retry_after
) -> None:
    route = respx_mock.post(f"{API}/sendMessage").mock(
        side_effect=[
            error(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after),
            sent(5),
        ]
    )
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    telegram = notifier()
    telegram._sleep = record
    assert await telegram.send(sample_notification(), None) == "5"
    assert route.call_count == 2 and waits == [retry_after]


def test_retry_after_as_timedelta_is_understood() -> None:
    assert _seconds(timedelta(seconds=3)) == 3 and _seconds(2) == 2


async def test_unparseable_html_is_resent_as_plain_text(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(f"{API}/sendMessage").mock(
        side_effect=[error(400, "Bad Request: can't parse entities: unexpected end tag"), sent(9)]
    )
    assert await notifier().send(sample_notification(), None) == "9"
    second = form(route.calls[1].request)
    assert "parse_mode" not in second and "<b>" not in second["text"]
    assert "FIRING: APIDown on binance" in second["text"]


@pytest.mark.parametrize(
    ("response", "words", "retryable"),
    [
        (error(400, "Bad Request: chat not found"), "(?i)chat not found", False),
        (error(403, "Forbidden: bot was kicked from the supergroup chat"), "forbidden", False),
        (error(401, "Unauthorized"), "invalid bot token", False),
        (httpx.ConnectError("refused"), "network error", True),
    ],
)
async def test_errors_become_notify_errors_without_the_token(
    respx_mock: respx.MockRouter, response, words, retryable
) -> None:
    respx_mock.post(f"{API}/sendMessage").mock(side_effect=[response] * 5)
    with pytest.raises(NotifyError, match=words) as raised:
        await notifier().send(sample_notification(), None)
    assert raised.value.retryable is retryable
    assert TOKEN not in str(raised.value)


async def test_too_long_message_is_split_into_balanced_replying_parts(
    respx_mock: respx.MockRouter,
) -> None:
    route = respx_mock.post(f"{API}/sendMessage").mock(
        side_effect=[sent(10), sent(11), sent(12), sent(13)]
    )
    long = {
        **GOOD_DIAGNOSIS,
        "diagnosis": "root <cause> & effect " * 90,
        "action_items": ["step " * 99] * 10,
    }
    await notifier().send(sample_notification(diagnosis=long), None)
    bodies = [form(c.request) for c in route.calls]
    assert len(bodies) >= 2
    texts = [valid(b["text"]) for b in bodies]
    assert "".join(texts).count("root <cause> & effect") == 90, "diagnosis never cut"
    assert all(json.loads(b["reply_parameters"])["message_id"] == 10 for b in bodies[1:])


def test_hostile_7000_character_annotation_arrives_escaped_and_visibly_shortened() -> None:
    hostile = ("<script>alert(1)</script> <!channel> </b><i> & " * 200)[:7000]
    parts = pack(render(sample_notification(annotations={"description": hostile})))
    assert len(parts) == 1
    text = valid(parts[0])
    assert "<script>alert(1)</script>" in text and "… [shortened]" in text


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    label=st.text(max_size=500),
    annotation=st.text(max_size=8000),
    diagnosis=st.text(min_size=1, max_size=2000).filter(lambda s: clean(s).strip()),
)
def test_any_text_gives_valid_html_parts_that_fit(label, annotation, diagnosis) -> None:
    n = sample_notification(
        labels={"exchange": label},
        annotations={"summary": annotation[:400], "description": annotation},
        diagnosis={
            **GOOD_DIAGNOSIS,
            "diagnosis": diagnosis,
            "action_items": [annotation[:500] or "x"] * 10,
        },
    )
    parts = pack(render(n))
    texts = [valid(p) for p in parts]
    start = clean(diagnosis).strip()[:40].replace("\r", "")
    assert start in "".join(texts).replace("\r", ""), "the diagnosis arrives"


def test_a_line_longer_than_a_message_is_split_into_balanced_pieces() -> None:
    parts = pack([Line(label="Diagnosis:", text="<&>" * 3000, tag="i")])
    assert len(parts) >= 3
    assert "".join(valid(p) for p in parts).count("<&>") == 3000


async def test_ping_uses_get_me(respx_mock: respx.MockRouter) -> None:
    respx_mock.post(f"{API}/getMe").mock(
        return_value=httpx.Response(
            200,
            json={
                "ok": True,
                "result": {
                    "id": 1,
                    "is_bot": True,
                    "first_name": "Enricher",
                    "username": "enricher_bot",
                },
            },
        )
    )
    assert "bot @enricher_bot" in await notifier().ping()


async def test_a_retry_sends_only_the_parts_that_did_not_go_out(
    respx_mock: respx.MockRouter,
) -> None:
    route = respx_mock.post(f"{API}/sendMessage").mock(side_effect=[sent(n) for n in range(21, 40)])
    long = {**GOOD_DIAGNOSIS, "diagnosis": "<&> " * 500, "action_items": ["<" * 499] * 10}
    notification = sample_notification(diagnosis=long)
    parts = pack(render(notification))
    assert len(parts) >= 3
    recorded: list[tuple[str, str | None]] = []

    async def record(step: str, ref: str | None) -> None:
        recorded.append((step, ref))

    done = {"part-1": "10", "part-2": "11"}  # what an earlier attempt sent before it failed
    ref = await notifier().send(notification, None, Progress(done, record=record))
    assert ref == "10", "the message is still known by its first part"
    assert len(route.calls) == len(parts) - 2
    first_sent = form(route.calls[0].request)
    assert first_sent["text"] == parts[2]
    assert json.loads(first_sent["reply_parameters"])["message_id"] == 10
    assert recorded[0] == ("part-3", "21")


MIXED = "alertmanager-0.25-mixed_apidown_one_resolved.json"
GROUP_OF_3 = "alertmanager-0.25-firing_apidown_group_of_3.json"


def test_full_message_headline_names_only_the_firing_and_lists_the_resolved() -> None:
    [part] = pack(render(sample_notification(MIXED)))
    text = valid(part)
    assert text.startswith("🔥 FIRING: APIDown on bybit and okx\n")
    resolved = text[text.index("✅ Resolved:") :].splitlines()
    assert resolved[1].startswith("• APIDown exchange=binance ")
    assert resolved[1].endswith("resolved, fired for 4s")


def test_full_message_shows_ten_resolved_alerts_and_counts_the_rest() -> None:
    base = sample_notification(MIXED)
    parts = pack(render(base.model_copy(update={"resolved": base.resolved * 15})))
    text = "".join(valid(p) for p in parts)
    assert text.count("resolved, fired for 4s") == 10
    assert "… and 5 more alerts" in text


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(label=st.text(max_size=500), name=st.text(min_size=1, max_size=300))
def test_any_text_in_a_mixed_group_gives_valid_html_parts_that_fit(label, name) -> None:
    n = sample_notification(MIXED, labels={"exchange": label, "alertname": name, "zone": label})
    n = with_new(n.model_copy(update={"resolved": n.resolved * 12}), label)
    for part in pack(render(n)):
        valid(part)


def test_escalation_marks_new_alerts_next_to_their_names() -> None:
    n = with_new(sample_notification(GROUP_OF_3, kind="escalation"), "okx")
    text = "".join(valid(p) for p in pack(render(n)))
    assert text.startswith("🔥 MORE FIRING")
    assert "• APIDown 🆕 new exchange=okx " in text
    assert "• APIDown exchange=binance " in text and text.count("🆕") == 1
