"""Page first, enrich after: Slack and Telegram show the final diagnosis in place of the message
they sent, against the loopback Slack and Telegram APIs (the console's edit: test_console.py)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup

from app.models import Diagnosis, DiagnosisSource, EnrichedNotification
from app.notifiers.base import NotifyError, Progress, Sent, Thread
from app.notifiers.slack import SlackBotNotifier, SlackWebhookNotifier, retry_handlers
from app.notifiers.slack_blocks import message
from app.notifiers.telegram import TelegramNotifier, pack, render
from app.notifiers.telegram_http import AiohttpRequest
from tests.fakes import GOOD_DIAGNOSIS, sample_notification
from tests.loopback import FAKE_SLACK_TOKEN, FakeSlack, FakeTelegram, all_text

CHAT = "-100123"
TELEGRAM_LIMIT = 4096  # the Bot API's limit on a message's text, in UTF-16 code units
LLM_DIAGNOSIS = {
    **GOOD_DIAGNOSIS,
    "diagnosis": "The LLM says: Binance's API gateway rejects every request since 10:19 UTC.",
}
LONG = {**GOOD_DIAGNOSIS, "diagnosis": "<&> " * 500, "action_items": ["<" * 499] * 10}
HOSTILE = {
    **GOOD_DIAGNOSIS,
    "diagnosis": "<!channel> <b>not bold</b> & <@U123> </i>",
    "action_items": ["<!here> restart & pray"],
}
OUR_LINK = re.compile(r"<https?://[^<>|\s]+\|[^<>]+>")


def final(
    n: EnrichedNotification, diagnosis: dict[str, Any] = LLM_DIAGNOSIS
) -> EnrichedNotification:
    """`n` as it is once the LLM answered."""
    return n.model_copy(
        update={
            "diagnosis": Diagnosis.model_validate(diagnosis),
            "source": DiagnosisSource(kind="llm", model="deepseek-chat"),
        }
    )


class Steps:
    """A Progress that remembers what went out, to hand to a retry."""

    def __init__(self) -> None:
        self.done: dict[str, str | None] = {}

    def progress(self, hold: Callable[[], Awaitable[None]] | None = None) -> Progress:
        async def record(step: str, ref: str | None) -> None:
            self.done[step] = ref

        return Progress(dict(self.done), hold=hold, record=record)


# Slack


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    server = await FakeSlack().start()
    yield server
    await server.stop()


def slack_bot(slack: FakeSlack) -> SlackBotNotifier:
    client = AsyncWebClient(
        token=FAKE_SLACK_TOKEN, base_url=slack.api_url, retry_handlers=retry_handlers()
    )
    return SlackBotNotifier(client, slack.channel_id)


def no_raw_markup(payload: dict[str, Any]) -> None:
    for text in all_text(payload):
        assert "<" not in OUR_LINK.sub("", text), f"raw '<' survived in {text[:80]!r}"


async def test_slack_bot_edit_replaces_the_message_s_blocks_in_place(slack) -> None:
    notifier, preliminary = slack_bot(slack), sample_notification()
    ref = await notifier.send(preliminary, None)
    updated = final(preliminary)
    assert await notifier.edit(updated, Sent(ref, {"post": ref})) == ref
    [shown] = slack.top_level()
    assert shown["updated"] is True and shown["link_names"] is False
    assert shown["attachments"] == message(updated)["attachments"]
    assert shown["text"] == message(updated)["text"]
    text = "\n".join(all_text(shown))
    assert "The LLM says" in text and "model deepseek-chat" in text
    assert "rule-based" not in text
    assert [r.method for r in slack.requests] == ["chat.postMessage", "chat.update"]


async def test_slack_bot_edit_of_a_thread_reply_edits_the_reply(slack) -> None:
    notifier = slack_bot(slack)
    root = await notifier.send(sample_notification(), None)
    escalation = sample_notification(
        "alertmanager-0.25-firing_apidown_group_of_3.json", kind="escalation", notification_id=2
    )
    reply = await notifier.send(escalation, Thread(ref=root))
    await notifier.edit(final(escalation), Sent(reply, {"reply": reply}))
    [shown] = slack.replies(root.split(":")[1])
    assert shown["updated"] is True and "The LLM says" in "\n".join(all_text(shown))
    assert "updated" not in slack.messages[root.split(":")[1]], "the root is left alone"


async def test_slack_bot_edit_of_a_deleted_message_is_a_permanent_error(slack) -> None:
    with pytest.raises(NotifyError, match="gone") as raised:
        await slack_bot(slack).edit(final(sample_notification()), Sent("C0FAKE0001:1.000009"))
    assert raised.value.retryable is False


@pytest.mark.parametrize("code", ["cant_update_message", "edit_window_closed"])
async def test_slack_bot_edit_slack_refuses_is_a_permanent_error(slack, code) -> None:
    notifier = slack_bot(slack)
    ref = await notifier.send(sample_notification(), None)
    slack.fail_next(200, {"ok": False, "error": code})
    with pytest.raises(NotifyError, match="edit") as raised:
        await notifier.edit(final(sample_notification()), Sent(ref))
    assert raised.value.retryable is False


async def test_slack_bot_edit_while_slack_is_down_is_retryable(slack) -> None:
    notifier = slack_bot(slack)
    ref = await notifier.send(sample_notification(), None)
    for _ in range(3):
        slack.fail_next(503, {"ok": False, "error": "service_unavailable"})
    with pytest.raises(NotifyError) as raised:
        await notifier.edit(final(sample_notification()), Sent(ref))
    assert raised.value.retryable is True


async def test_slack_bot_edit_retried_after_it_went_out_calls_nothing(slack) -> None:
    ref = "C0FAKE0001:1700000000.000001"
    again = await slack_bot(slack).edit(
        final(sample_notification()), Sent(ref), Progress({"edit": ref})
    )
    assert again == ref and slack.requests == []


async def test_slack_bot_edit_without_a_reference_is_a_permanent_error(slack) -> None:
    with pytest.raises(NotifyError, match="no message to edit") as raised:
        await slack_bot(slack).edit(final(sample_notification()), Sent(None))
    assert raised.value.retryable is False and slack.requests == []


async def test_slack_webhook_edit_posts_the_diagnosis_as_a_follow_up(slack) -> None:
    notifier = SlackWebhookNotifier(AsyncWebhookClient(f"{slack.url}/services/T0/B0/fake"))
    preliminary = sample_notification()
    await notifier.send(preliminary, None)
    steps = Steps()
    assert await notifier.edit(final(preliminary), Sent(None), steps.progress()) is None
    assert steps.done == {"follow-up": None}
    first, follow_up = slack.webhook_posts
    blocks = follow_up["attachments"][0]["blocks"]
    assert blocks[0]["text"]["text"] == f"🩺 AI diagnosis: {preliminary.title}"
    assert follow_up["text"].startswith("🩺 AI diagnosis: ")
    text = "\n".join(all_text(follow_up))
    assert "The LLM says" in text and "Action items" in text and "Rollback plan" in text
    assert blocks[-1]["elements"][0]["text"] == "Diagnosis source: model deepseek-chat"
    assert "FIRING" not in text, "only the diagnosis: the alerts are in the message above"
    assert first == message(preliminary)


async def test_slack_webhook_edit_retried_after_it_went_out_posts_nothing(slack) -> None:
    notifier = SlackWebhookNotifier(AsyncWebhookClient(f"{slack.url}/services/T0/B0/fake"))
    await notifier.edit(final(sample_notification()), Sent(None), Progress({"follow-up": None}))
    assert slack.webhook_posts == []


async def test_hostile_diagnosis_text_is_escaped_in_the_slack_edit_and_follow_up(slack) -> None:
    notifier, preliminary = slack_bot(slack), sample_notification()
    ref = await notifier.send(preliminary, None)
    await notifier.edit(final(preliminary, HOSTILE), Sent(ref))
    webhook = SlackWebhookNotifier(AsyncWebhookClient(f"{slack.url}/services/T0/B0/fake"))
    await webhook.edit(final(preliminary, HOSTILE), Sent(None))
    for payload in (slack.top_level()[0], slack.webhook_posts[0]):
        no_raw_markup(payload)
        text = "\n".join(all_text(payload))
        assert "&lt;!channel&gt; &lt;b&gt;not bold&lt;/b&gt; &amp; &lt;@U123&gt;" in text
        assert "&lt;!here&gt; restart &amp; pray" in text


# Telegram


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    server = await FakeTelegram().start()
    yield server
    await server.stop()


@pytest.fixture
async def bot(telegram) -> AsyncIterator[TelegramNotifier]:
    async def no_sleep(_: float) -> None:
        return None

    request = AiohttpRequest()
    api = Bot(telegram.token, base_url=telegram.api_url, request=request)
    notifier = TelegramNotifier(api, CHAT, sleep=no_sleep)
    yield notifier
    await notifier.close()


async def send_parts(bot: TelegramNotifier, n: EnrichedNotification) -> Sent:
    """Send `n` and return what the store would have recorded of it."""
    steps = Steps()
    ref = await bot.send(n, None, steps.progress())
    return Sent(ref, steps.done)


def edit_calls(telegram: FakeTelegram) -> list[dict[str, Any]]:
    return [r.body for r in telegram.requests if r.method == "editMessageText"]


async def test_telegram_edit_of_a_one_part_message_edits_it_in_place(bot, telegram) -> None:
    preliminary = sample_notification()
    sent = await send_parts(bot, preliminary)
    assert sent.steps == {"part-1": "100"}
    steps = Steps()
    assert await bot.edit(final(preliminary), sent, steps.progress()) == "100"
    assert steps.done == {"edit": "100"}
    assert len(telegram.sent) == 1, "nothing new in the chat"
    [edit] = telegram.edits
    assert edit["chat_id"] == CHAT and edit["message_id"] == "100"
    assert edit["parse_mode"] == "HTML"
    assert json.loads(edit["link_preview_options"]) == {"is_disabled": True}
    shown = telegram.current(100)
    assert "The LLM says" in shown and "Diagnosis source: model deepseek-chat" in shown
    assert "rule-based" not in shown


async def test_telegram_edit_falls_back_to_the_reference_for_part_1(bot, telegram) -> None:
    preliminary = sample_notification()
    await bot.send(preliminary, None)
    assert await bot.edit(final(preliminary), Sent("100")) == "100"
    assert "The LLM says" in telegram.current(100)


async def test_telegram_edit_that_needs_more_parts_sends_the_extra_as_replies(
    bot, telegram
) -> None:
    preliminary = sample_notification()
    sent = await send_parts(bot, preliminary)
    updated = final(preliminary, LONG)
    parts = pack(render(updated))
    assert len(parts) >= 3
    steps = Steps()
    await bot.edit(updated, sent, steps.progress())
    extras = [f"edit-extra-{k}" for k in range(1, len(parts))]
    assert list(steps.done) == ["edit", *extras]
    assert telegram.sent[0]["text"] == parts[0]
    replies = telegram.sent[1:]
    assert [m["text"] for m in replies] == parts[1:]
    assert all(m["reply_to"] == 100 for m in replies)
    assert [steps.done[e] for e in extras] == [str(m["message_id"]) for m in replies]


async def test_telegram_edit_that_needs_fewer_parts_marks_the_leftovers(bot, telegram) -> None:
    preliminary = sample_notification(diagnosis=LONG)
    sent = await send_parts(bot, preliminary)
    assert len(sent.steps) >= 3
    steps = Steps()
    await bot.edit(final(preliminary), sent, steps.progress())
    assert list(steps.done) == ["edit", *[f"edit-part-{k}" for k in range(2, len(sent.steps) + 1)]]
    assert len(telegram.sent) == len(sent.steps), "nothing new in the chat"
    assert "The LLM says" in telegram.current(100)
    for part in telegram.sent[1:]:
        assert telegram.current(part["message_id"]) == "(continued in the message above)"
        assert part["text"] == "<i>(continued in the message above)</i>"


async def test_telegram_edit_of_every_part_edits_each_in_place(bot, telegram) -> None:
    preliminary = sample_notification(diagnosis=LONG)
    sent = await send_parts(bot, preliminary)
    updated = final(preliminary, {**LONG, "impact": "LLM: orders fail"})
    parts = pack(render(updated))
    assert len(parts) == len(sent.steps)
    await bot.edit(updated, sent)
    assert [m["text"] for m in telegram.sent] == parts
    assert "LLM: orders fail" in "".join(telegram.current(m["message_id"]) for m in telegram.sent)


async def test_telegram_edit_retried_after_a_failure_repeats_no_step_that_went_out(
    bot, telegram
) -> None:
    preliminary = sample_notification(diagnosis=LONG)
    sent = await send_parts(bot, preliminary)
    updated = final(preliminary, {**LONG, "diagnosis": "LLM " + "<&> " * 500})
    steps, holds = Steps(), []

    async def fail_after_the_first_step() -> None:
        holds.append("checked")
        if len(holds) == 2:  # every attempt at the second part's edit fails
            for _ in range(4):
                telegram.fail_next(500, {"ok": False, "error_code": 500, "description": "Oops"})

    with pytest.raises(NotifyError) as raised:
        await bot.edit(updated, sent, steps.progress(hold=fail_after_the_first_step))
    assert raised.value.retryable is True
    assert list(steps.done) == ["edit"]
    before = len(edit_calls(telegram))

    await bot.edit(updated, sent, steps.progress())
    retried = edit_calls(telegram)[before:]
    assert "100" not in [call["message_id"] for call in retried], "part 1 is not edited again"
    assert [m["text"] for m in telegram.sent] == pack(render(updated))


async def test_telegram_message_is_not_modified_counts_as_done(bot, telegram) -> None:
    n = final(sample_notification())
    sent = await send_parts(bot, n)
    steps = Steps()
    assert await bot.edit(n, sent, steps.progress()) == "100"
    assert steps.done == {"edit": "100"}
    assert len(edit_calls(telegram)) == 1 and telegram.edits == [], "Telegram refused, unchanged"


async def test_telegram_edit_of_a_deleted_message_is_a_permanent_error(bot, telegram) -> None:
    with pytest.raises(NotifyError, match=r"(?i)message to edit not found") as raised:
        await bot.edit(final(sample_notification()), Sent("999", {"part-1": "999"}))
    assert raised.value.retryable is False
    assert len(edit_calls(telegram)) == 1, "not retried"


async def test_telegram_edit_without_a_reference_is_a_permanent_error(bot, telegram) -> None:
    with pytest.raises(NotifyError, match="no message to edit") as raised:
        await bot.edit(final(sample_notification()), Sent(None))
    assert raised.value.retryable is False and telegram.requests == []


async def test_telegram_edit_with_unparseable_html_is_resent_as_plain_text(bot, telegram) -> None:
    preliminary = sample_notification()
    sent = await send_parts(bot, preliminary)
    telegram.fail_next(
        400,
        {"ok": False, "error_code": 400, "description": "Bad Request: can't parse entities: x"},
    )
    await bot.edit(final(preliminary), sent)
    first, second = edit_calls(telegram)
    assert first["parse_mode"] == "HTML" and "parse_mode" not in second
    assert "<b>" not in second["text"] and "The LLM says" in telegram.current(100)


async def test_telegram_edit_honours_rate_limits(bot, telegram) -> None:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    preliminary = sample_notification()
    sent = await send_parts(bot, preliminary)
    bot._sleep = record
    telegram.fail_next(
        429,
        {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 3"}
        | {"parameters": {"retry_after": 3}},
    )
    await bot.edit(final(preliminary), sent)
    assert waits == [3] and len(telegram.edits) == 1


async def test_telegram_edit_passes_a_reply_markup_to_the_first_part(bot, telegram) -> None:
    preliminary = sample_notification(diagnosis=LONG)
    sent = await send_parts(bot, preliminary)
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("🔕 Silence", url="https://am.test/")]])
    await bot.edit(final(preliminary, LONG), sent, reply_markup=markup)
    first, *rest = edit_calls(telegram)
    assert json.loads(first["reply_markup"]) == markup.to_dict()
    assert rest and all("reply_markup" not in call for call in rest)


async def test_hostile_diagnosis_text_is_escaped_in_the_telegram_edit(bot, telegram) -> None:
    preliminary = sample_notification()
    sent = await send_parts(bot, preliminary)
    await bot.edit(final(preliminary, HOSTILE), sent)
    [edit] = telegram.edits
    assert (
        "&lt;!channel&gt; &lt;b&gt;not bold&lt;/b&gt; &amp; &lt;@U123&gt; &lt;/i&gt;"
        in (edit["text"])
    )
    shown = telegram.current(100)
    assert "<!channel> <b>not bold</b> & <@U123> </i>" in shown
    assert "<!here> restart & pray" in shown


async def test_edited_text_stays_within_4096_utf16_units(bot, telegram) -> None:
    preliminary = sample_notification()
    sent = await send_parts(bot, preliminary)
    wide = {  # astral emoji count twice in UTF-16; `&` and `<` grow fivefold as HTML
        "diagnosis": "🔥&<" * 666,
        "impact": "💥&" * 500,
        "action_items": ["🛠<&" * 166] * 10,
        "rollback_plan": "↩️&" * 333,
        "estimated_recovery_time": "⏱" * 200,
    }
    await bot.edit(final(preliminary, wide), sent)
    texts = [e["text"] for e in telegram.edits] + [m["text"] for m in telegram.sent[1:]]
    assert len(texts) >= 3
    for text in texts:
        assert len(text.encode("utf-16-le")) // 2 <= TELEGRAM_LIMIT
    assert "".join(telegram.current(m["message_id"]) for m in telegram.sent).count("🔥&<") == 666
