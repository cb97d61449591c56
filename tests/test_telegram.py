import json
import re
from datetime import timedelta
from html.parser import HTMLParser
from urllib.parse import parse_qs

import httpx
import pytest
import respx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup

from app.formatting import clean
from app.models import EnrichedNotification, MetricContext
from app.notifiers.base import NotifyError, Progress, Sent, Thread
from app.notifiers.telegram import (
    LIMIT,
    Line,
    TelegramNotifier,
    pack,
    part_ids,
    render,
    units,
)
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
    assert "\n\n<b>✅ Resolved:</b>\n• APIDown exchange=binance " in part
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


# Telegram's documented limit for a message's text, in UTF-16 code units (Bot API, sendMessage)
TELEGRAM_LIMIT = 4096


def test_line_escapes_its_text_label_and_link_so_no_quote_or_bracket_breaks_the_href() -> None:
    line = Line(label="<L&>", text='a<b>&"c', href='https://x.test/?q="<y>"&z=1')
    assert line.html() == (
        "<b>&lt;L&amp;&gt;</b> "
        '<a href="https://x.test/?q=&quot;&lt;y&gt;&quot;&amp;z=1">a&lt;b&gt;&amp;"c</a>'
    )


def test_line_wraps_its_text_in_its_tag_and_a_link_wins_over_the_tag() -> None:
    assert Line(text="x<", tag="code").html() == "<code>x&lt;</code>"
    assert Line(text="t", tag="i", href="https://r.test").html() == '<a href="https://r.test">t</a>'
    assert Line(text="t", tag="i").html("other & more") == "<i>other &amp; more</i>"
    assert Line(label="Rollback:").html() == "<b>Rollback:</b>", "no trailing space"
    assert Line(label="Rollback:", text="t").html(with_label=False) == "t"
    assert Line(text="plain").html() == "plain"


def test_units_counts_utf16_code_units_as_telegram_does() -> None:
    assert units("abc") == 3
    assert units("€") == 1
    assert units("😀") == 2
    assert units("\U00010348") == 2
    assert units("e\u0301") == 2


def test_lines_fill_a_message_up_to_exactly_4096_units_and_no_further() -> None:
    fits = pack([Line("a" * (TELEGRAM_LIMIT - 2)), Line("b")])
    assert fits == ["a" * (TELEGRAM_LIMIT - 2) + "\nb"]
    over = pack([Line("a" * (TELEGRAM_LIMIT - 1)), Line("b")])
    assert over == ["a" * (TELEGRAM_LIMIT - 1), "b"]


def test_lines_are_packed_into_as_few_messages_as_fit_in_order() -> None:
    lines = [Line(c * 2000) for c in "abc"]
    assert pack(lines) == ["a" * 2000 + "\n" + "b" * 2000, "c" * 2000]


def test_emoji_count_twice_against_the_limit() -> None:
    just = pack([Line("😀" * (TELEGRAM_LIMIT // 2))])
    assert just == ["😀" * (TELEGRAM_LIMIT // 2)]
    parts = pack([Line("😀" * (TELEGRAM_LIMIT // 2 + 1))])
    assert len(parts) == 2 and all(units(p) <= TELEGRAM_LIMIT for p in parts)
    assert "".join(parts) == "😀" * (TELEGRAM_LIMIT // 2 + 1)
    two = pack([Line("😀" * 1500), Line("😀" * 1500)])
    assert two == ["😀" * 1500, "😀" * 1500], "3001 code points, but 6001 units"


def test_nothing_to_say_is_one_empty_message() -> None:
    assert pack([]) == [""]
    assert pack([Line()]) == [""]


def test_a_long_line_is_cut_at_spaces_into_as_few_pieces_as_fit_and_labelled_once() -> None:
    words = "incident " * 1200  # 10800 characters
    parts = pack([Line(label="🩺 Diagnosis:", text=words)])
    assert len(parts) == 3
    assert parts[0].startswith("<b>🩺 Diagnosis:</b> incident ")
    assert all("Diagnosis" not in p for p in parts[1:])
    shown = [p.removeprefix("<b>🩺 Diagnosis:</b> ").split(" ") for p in parts]
    assert all(set(w) - {""} == {"incident"} for w in shown), "never in the middle of a word"
    assert sum(w.count("incident") for w in shown) == 1200
    assert all(units(p) <= TELEGRAM_LIMIT for p in parts)


def test_a_long_line_without_spaces_is_cut_anyway_into_as_few_pieces_as_fit() -> None:
    parts = pack([Line("x" * 9000, tag="code")])
    assert len(parts) == 3
    assert all(p.startswith("<code>") and p.endswith("</code>") for p in parts)
    assert "".join(p.removeprefix("<code>").removesuffix("</code>") for p in parts) == "x" * 9000


def test_a_space_near_the_start_does_not_make_a_tiny_piece() -> None:
    parts = pack([Line("a " + "x" * 9000)])
    assert len(parts) == 3 and parts[0].startswith("a x")


def test_a_single_character_that_barely_fits_still_goes_out() -> None:
    parts = pack([Line("&" * 2000)], limit=5)  # every "&" is "&amp;": five units
    assert parts == ["&amp;"] * 2000


HOSTILE = st.text(
    alphabet=st.sampled_from([*"<>&\"' \n", "😀", "\U0001f9ea", "\u0301", "\U00010348", "a"]),
    max_size=3000,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(HOSTILE, min_size=1, max_size=4), label=HOSTILE)
def test_hostile_text_packs_into_valid_parts_that_give_back_every_character(
    texts: list[str], label: str
) -> None:
    lines = [Line(label=label[:50], text=t, tag="i") for t in texts]
    parts = pack(lines, limit=1000)
    shown = "\n".join(valid(p) for p in parts)
    for t in texts:
        for chunk in t.split(" "):
            assert chunk.replace("\n", "") in shown.replace("\n", "")


def test_every_alert_text_is_escaped_and_the_runbook_href_stays_one_attribute() -> None:
    n = sample_notification(
        labels={"exchange": '<b>"x"&y</b>'},
        annotations={
            "summary": "<summary> & co",
            "description": "</i><b>desc",
            "runbook_url": 'https://wiki.test/run"book?a=<1>&b=2',
        },
        diagnosis={**GOOD_DIAGNOSIS, "diagnosis": "<llm> & </b>", "impact": "1 < 2"},
    )
    [part] = pack(render(n))
    text = valid(part)
    for needle in ('exchange=<b>"x"&y</b>', "<summary> & co", "</i><b>desc", "<llm> & </b>"):
        assert needle in text
    assert '<a href="https://wiki.test/run&quot;book?a=&lt;1&gt;&amp;b=2">📖 Runbook</a>' in part


def test_the_graph_and_silence_links_are_links() -> None:
    [part] = pack(render(sample_notification()))
    assert "<a href=" in part and ">📈 graph</a>" in part
    assert ">🔕 Silence in Alertmanager</a>" in part


async def test_parts_after_the_first_reply_to_the_first_and_the_first_to_the_thread(
    respx_mock: respx.MockRouter,
) -> None:
    route = respx_mock.post(f"{API}/sendMessage").mock(side_effect=[sent(n) for n in range(50, 60)])
    long = {**GOOD_DIAGNOSIS, "diagnosis": "<&> " * 500, "action_items": ["<" * 499] * 10}
    n = sample_notification(diagnosis=long)
    count = len(pack(render(n)))
    assert count >= 3, "three parts: the chain is visible"
    ref = await notifier().send(n, Thread(ref="7"))
    assert ref == "50"
    replies = [json.loads(form(c.request)["reply_parameters"]) for c in route.calls]
    assert [r["message_id"] for r in replies] == [7] + [50] * (count - 1)
    assert all(r["allow_sending_without_reply"] is True for r in replies)


async def test_a_message_outside_a_thread_or_topic_replies_to_nothing_and_shows_no_preview(
    respx_mock: respx.MockRouter,
) -> None:
    route = respx_mock.post(f"{API}/sendMessage").mock(return_value=sent(60))
    await notifier().send(sample_notification(), Thread(ref="not-a-number"))
    body = form(route.calls[0].request)
    assert "reply_parameters" not in body and "message_thread_id" not in body
    assert json.loads(body["link_preview_options"])["is_disabled"] is True


async def test_ping_with_a_bad_token_is_permanent_and_other_errors_retryable(
    respx_mock: respx.MockRouter,
) -> None:
    respx_mock.post(f"{API}/getMe").mock(
        side_effect=[error(401, "Unauthorized"), error(500, "Internal Server Error")]
    )
    with pytest.raises(NotifyError) as bad:
        await notifier().ping()
    assert bad.value.retryable is False and str(bad.value) == "telegram: invalid bot token"
    with pytest.raises(NotifyError) as down:
        await notifier().ping()
    assert down.value.retryable is True
    assert str(down.value) == "telegram: Internal Server Error"


def test_part_ids_are_the_parts_in_order_up_to_the_first_gap() -> None:
    assert part_ids(Sent("10", {"part-1": "10", "part-2": "11", "part-3": "12"})) == [10, 11, 12]
    assert part_ids(Sent("9", {})) == [9], "part 1 falls back to the reference"
    assert part_ids(Sent("9", {"part-2": "11"})) == [9, 11]
    assert part_ids(Sent("10", {"part-1": "10", "part-3": "12"})) == [10]
    assert part_ids(Sent(None, {})) == []
    assert part_ids(Sent("C123.456", {})) == [], "not a Telegram message id"


@pytest.mark.parametrize("ref", [None, "not-a-message-id"])
async def test_editing_a_message_that_was_never_sent_is_a_permanent_error(
    respx_mock: respx.MockRouter, ref: str | None
) -> None:
    route = respx_mock.post(f"{API}/editMessageText").mock(return_value=sent(1))
    with pytest.raises(NotifyError) as raised:
        await notifier().edit(sample_notification(), Sent(ref, {}))
    assert raised.value.retryable is False
    assert str(raised.value) == f"telegram: no message to edit (ref {ref!r})"
    assert not route.called


async def test_an_edit_to_fewer_parts_marks_the_old_ones_as_continued_above(
    respx_mock: respx.MockRouter,
) -> None:
    route = respx_mock.post(f"{API}/editMessageText").mock(return_value=sent(1))
    recorded: list[str] = []

    async def record(step: str, ref: str | None) -> None:
        recorded.append(f"{step}={ref}")

    markup = InlineKeyboardMarkup([[InlineKeyboardButton("Ack", callback_data="ack")]])
    n = sample_notification()
    [part] = pack(render(n))
    old = Sent("10", {"part-1": "10", "part-2": "11", "part-3": "12"})
    ref = await notifier().edit(n, old, Progress(record=record), reply_markup=markup)
    assert ref == "10"
    bodies = [form(c.request) for c in route.calls]
    assert [b["message_id"] for b in bodies] == ["10", "11", "12"]
    continued = "<i>(continued in the message above)</i>"
    assert [b["text"] for b in bodies] == [part, continued, continued]
    assert all(b["parse_mode"] == "HTML" and b["chat_id"] == "-100123" for b in bodies)
    assert "reply_markup" in bodies[0]
    assert all("reply_markup" not in b for b in bodies[1:]), "the buttons stay on part 1"
    assert all(json.loads(b["link_preview_options"])["is_disabled"] for b in bodies)
    assert recorded == ["edit=10", "edit-part-2=11", "edit-part-3=12"]
    assert valid(continued) == "(continued in the message above)"


async def test_an_edit_to_more_parts_sends_the_new_ones_as_replies_to_the_first(
    respx_mock: respx.MockRouter,
) -> None:
    edits = respx_mock.post(f"{API}/editMessageText").mock(return_value=sent(1))
    sends = respx_mock.post(f"{API}/sendMessage").mock(side_effect=[sent(n) for n in range(30, 40)])
    recorded: list[str] = []

    async def record(step: str, ref: str | None) -> None:
        recorded.append(f"{step}={ref}")

    long = {**GOOD_DIAGNOSIS, "diagnosis": "<&> " * 500, "action_items": ["<" * 499] * 10}
    n = sample_notification(diagnosis=long)
    parts = pack(render(n))
    assert len(parts) >= 3
    await notifier(thread_id=7).edit(n, Sent("10", {"part-1": "10"}), Progress(record=record))
    assert [form(c.request)["text"] for c in edits.calls] == parts[:1]
    bodies = [form(c.request) for c in sends.calls]
    assert [b["text"] for b in bodies] == parts[1:]
    assert all(json.loads(b["reply_parameters"])["message_id"] == 10 for b in bodies)
    assert all(b["message_thread_id"] == "7" for b in bodies)
    extras = [f"edit-extra-{i}={29 + i}" for i in range(1, len(parts))]
    assert recorded == ["edit=10", *extras]


async def test_an_edit_telegram_calls_not_modified_counts_as_done(
    respx_mock: respx.MockRouter,
) -> None:
    route = respx_mock.post(f"{API}/editMessageText").mock(
        return_value=error(
            400,
            "Bad Request: message is not modified: specified new message "
            "content and reply markup are exactly the same",
        )
    )
    assert await notifier().edit(sample_notification(), Sent("10", {})) == "10"
    assert route.call_count == 1


async def test_an_edit_of_a_deleted_message_is_a_permanent_error(
    respx_mock: respx.MockRouter,
) -> None:
    route = respx_mock.post(f"{API}/editMessageText").mock(
        return_value=error(400, "Bad Request: message to edit not found")
    )
    with pytest.raises(NotifyError) as raised:
        await notifier().edit(sample_notification(), Sent("10", {}))
    assert raised.value.retryable is False
    assert raised.value.reason == "bad request: Message to edit not found"
    assert route.call_count == 1


def _without_age(text: str) -> str:
    """The message with the alert's age (it grows with the clock) as `AGE`."""
    return re.sub(r"\((\d+[dhms] ?)+\)", "(AGE)", re.sub(r"for (\d+[dhms] ?)+$", "for AGE", text))


def test_a_new_alert_is_shown_line_by_line_as_on_call_reads_it() -> None:
    [part] = pack(render(sample_notification()))
    assert _without_age(part) == "\n".join(
        [
            "<b>🔥 FIRING: APIDown on binance</b>",
            "<b>Severity:</b> critical",
            "",
            "<b>• APIDown</b> <code>exchange=binance instance=127.0.0.1:19100"
            " job=crypto-api-monitor</code>",
            "since 2026-11-21 10:19:26 UTC (AGE)",
            "binance API is down",
            "<i>binance has been unreachable for 30s</i>",
            "<code>api_health_status</code>",
            "now 0 · min 0 · max 1 · mean 0.5 · Δ -1 over 30m",
            "<code>██▁▁</code>",
            '<a href="http://prom.example:9090/graph?g0.expr=api_health_status&amp;g0.tab=0">'
            "📈 graph</a>",
            "",
            "<b>🩺 Diagnosis:</b> " + RULE_DIAGNOSIS,
            "<b>💥 Impact:</b> " + RULE_IMPACT,
            "<b>🛠 Action items:</b>",
            "1. Check the exchange's status page and announcement channel for maintenance or"
            " incidents.",
            "2. From the monitoring host, curl the exchange's ping endpoint to separate our"
            " network from theirs (DNS, TLS, egress proxy).",
            "3. If only one region or host fails, fail over to a healthy egress or API domain.",
            "4. Pause or reduce strategies that depend on binance; confirm open positions"
            " manually.",
            "<b>↩️ Rollback:</b> Revert any recent network, proxy, DNS or API-endpoint change;"
            " switch traffic back to the last known good endpoint.",
            "<b>⏱ Recovery:</b> Exchange maintenance: as announced (often 30-120 min); network"
            " faults: 5-15 min after failover.",
            "",
            "<i>Diagnosis source: rule-based fallback: no LLM API key configured</i>",
            '<a href="http://vm:19093/#/silences/new?filter=%7Balertname%3D%22APIDown%22%2C'
            'exchange%3D%22binance%22%7D">🔕 Silence in Alertmanager</a>',
        ]
    )


RULE_DIAGNOSIS = (
    "The binance API is not answering health checks: the exchange is down or in maintenance,"
    " or the path to it (DNS, egress proxy, network, TLS) is broken. Confidence: medium (from the"
    " alert's kind; no error code in it narrows the cause)."
)
RULE_IMPACT = (
    "No market data or order placement through binance: open positions cannot be adjusted and"
    " strategies depending on it are blind."
)


def test_a_resolved_follow_up_is_its_headline_and_one_line_per_alert() -> None:
    n = sample_notification("alertmanager-0.25-resolved_apidown_binance.json")
    assert pack(render(n)) == [
        "<b>✅ RESOLVED: APIDown on binance</b>\n✅ APIDown exchange=binance"
        " instance=127.0.0.1:19100 job=crypto-api-monitor resolved, fired for 6s"
    ]


def test_a_repeat_is_its_headline_and_one_line_per_alert_without_links() -> None:
    [part] = pack(render(sample_notification(kind="repeat")))
    assert _without_age(part) == (
        "<b>🔁 STILL FIRING: APIDown on binance</b>\n🔥 APIDown exchange=binance"
        " instance=127.0.0.1:19100 job=crypto-api-monitor still firing, for AGE"
    )


def test_a_runbook_link_closes_a_new_message() -> None:
    n = sample_notification(annotations={"runbook_url": "https://wiki.test/apidown"})
    [part] = pack(render(n))
    assert part.endswith('\n<a href="https://wiki.test/apidown">📖 Runbook</a>')


def test_long_names_and_annotations_are_shortened_with_a_visible_mark() -> None:
    name = "N" * 101
    n = sample_notification(
        labels={"alertname": name},
        annotations={"summary": "s" * 301, "description": "d" * 1001},
    )
    lines = "".join(valid(p) for p in pack(render(n))).splitlines()
    since = next(i for i, line in enumerate(lines) if line.startswith("since "))
    bullet, summary, description = lines[since - 1], lines[since + 1], lines[since + 2]
    assert bullet.startswith("• " + "N" * 80) and "N" * 101 not in bullet
    assert bullet.split(" exchange=")[0].endswith("… [shortened]")
    assert len(bullet.split(" exchange=")[0]) == len("• ") + 100
    assert summary.endswith("… [shortened]") and len(summary) == 300
    assert description.endswith("… [shortened]") and len(description) == 1000
    exact = sample_notification(
        labels={"alertname": "N" * 100},
        annotations={"summary": "s" * 300, "description": "d" * 1000},
    )
    whole = "".join(valid(p) for p in pack(render(exact)))
    assert f"• {'N' * 100}\n" in whole or f"• {'N' * 100} " in whole
    assert "s" * 300 in whole and "d" * 1000 in whole


def _with_context(context: MetricContext | None) -> EnrichedNotification:
    n = sample_notification()
    firing = [a.model_copy(update={"context": context}) for a in n.firing]
    return n.model_copy(update={"firing": firing})


def test_metrics_that_could_not_be_fetched_say_why_and_show_no_graph() -> None:
    [part] = pack(render(_with_context(MetricContext(unavailable="Prometheus <timed out>"))))
    assert "\nmetrics unavailable: Prometheus &lt;timed out&gt;\n" in part
    assert "📈 graph" not in part and "<code>api_health_status</code>" not in part


def test_metrics_without_a_sparkline_or_graph_show_only_the_query_and_figures() -> None:
    context = MetricContext(expr='up{job="a<b"}', current=1, minimum=0, maximum=1, mean=1)
    [part] = pack(render(_with_context(context)))
    assert '\n<code>up{job="a&lt;b"}</code>\nnow 1 · ' in part
    assert "📈 graph" not in part and "metrics unavailable" not in part
    assert part.count("<code>") == 2, "the labels and the query, no empty sparkline"


def test_an_alert_without_metrics_shows_no_metric_lines() -> None:
    [part] = pack(render(_with_context(None)))
    assert "now " not in part and "📈 graph" not in part and "metrics unavailable" not in part


def test_ten_firing_alerts_are_shown_and_the_rest_counted() -> None:
    n = sample_notification()
    many = n.model_copy(update={"firing": n.firing * 12})
    text = "\n".join(valid(p) for p in pack(render(many)))
    assert text.count("since 2026-11-21 10:19:26 UTC") == 10
    assert "\n… and 2 more alerts" in text
    assert "<i>… and 2 more alerts</i>" in "".join(pack(render(many)))


def test_without_a_diagnosis_no_diagnosis_section_is_shown() -> None:
    n = sample_notification().model_copy(update={"diagnosis": None})
    [part] = pack(render(n))
    assert "Diagnosis:" not in part and "Impact:" not in part and "Action items" not in part
    assert "<i>Diagnosis source: " in part, "where a diagnosis would come from still shows"


def test_an_escalation_keeps_its_links_and_a_follow_up_has_none() -> None:
    links = {"runbook_url": "https://wiki.test/apidown"}
    escalation = pack(render(sample_notification(kind="escalation", annotations=links)))[0]
    assert "🔕 Silence in Alertmanager</a>" in escalation and "📖 Runbook</a>" in escalation
    assert "Diagnosis source:" in escalation
    for kind in ("repeat", "resolved"):
        [part] = pack(render(sample_notification(kind=kind, annotations=links)))
        assert "Silence" not in part and "Runbook" not in part and "Diagnosis source" not in part


def test_a_piece_may_fill_the_limit_exactly() -> None:
    assert pack([Line("x" * 10)], limit=9) == ["x" * 9, "x"]


def test_a_space_in_the_first_half_is_not_worth_a_short_piece() -> None:
    assert pack([Line("xxxxx yyyyyyyy")], limit=10) == ["xxxxx yyyy", "yyyy"]
    assert pack([Line("xxxxxx yyyyyyy")], limit=10) == ["xxxxxx ", "yyyyyyy"]


def test_the_last_piece_of_a_long_line_keeps_its_last_words_together() -> None:
    text = "word " * 2000 + "end"
    parts = pack([Line(text)])
    assert "".join(parts) == text and len(parts) == 3


def test_a_long_query_and_a_long_resolved_name_are_shortened_too() -> None:
    context = MetricContext(expr="q" * 201, current=1, minimum=0, maximum=1, mean=1)
    [part] = pack(render(_with_context(context)))
    assert f"<code>{'q' * 187}… [shortened]</code>" in part
    assert part.count("… [shortened]") == 1
    exact = MetricContext(expr="q" * 200, current=1, minimum=0, maximum=1, mean=1)
    assert f"<code>{'q' * 200}</code>" in pack(render(_with_context(exact)))[0]
    base = sample_notification(MIXED)
    long_name = [a.model_copy(update={"name": "R" * 101}) for a in base.resolved]
    text = "".join(pack(render(base.model_copy(update={"resolved": long_name}))))
    assert f"• {'R' * 87}… [shortened] exchange=binance" in text


async def test_a_notifier_makes_four_attempts_by_default(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(f"{API}/sendMessage").mock(side_effect=httpx.ConnectError("down"))
    with pytest.raises(NotifyError) as raised:
        await notifier().send(sample_notification(), None)
    assert raised.value.retryable is True and route.call_count == 4


async def test_ping_names_the_bot_and_the_chat(respx_mock: respx.MockRouter) -> None:
    me = {"id": 1, "is_bot": True, "first_name": "Enricher", "username": "enricher_bot"}
    respx_mock.post(f"{API}/getMe").mock(
        return_value=httpx.Response(200, json={"ok": True, "result": me})
    )
    assert await notifier().ping() == "bot @enricher_bot, chat -100123"


def test_pieces_after_the_first_use_the_room_the_label_took() -> None:
    assert pack([Line(label="L", text="x" * 25)], limit=20) == ["<b>L</b> " + "x" * 11, "x" * 14]
