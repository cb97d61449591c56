"""Charts in messages (issue 13, part 1): which charts a message carries, Telegram's sendPhoto as a
reply to the message, Slack's files_upload_v2 into its thread, and that a chart never costs, holds
back or repeats the text message."""

from __future__ import annotations

import asyncio
import json
import math
import struct
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx
from slack_sdk.web.async_client import AsyncWebClient
from telegram import Bot

from app.chart_process import render_async, stop_renderer
from app.charts import PNG_SIGNATURE, ChartError
from app.models import AlertmanagerPayload, EnrichedNotification
from app.notifiers import chart_steps
from app.notifiers.base import Progress, Thread
from app.notifiers.chart_steps import MAX_CHARTS, charts_for
from app.notifiers.slack import SlackBotNotifier, retry_handlers
from app.notifiers.telegram import TelegramNotifier
from app.notifiers.telegram_http import AiohttpRequest
from app.prometheus import ContextBuilder, PrometheusClient, Series, plot_series, varying
from app.prompt_data import PromptBudget, prompt_data
from tests.fakes import PROMETHEUS_URL, START, fixture_text, plot, sample_notification, with_series
from tests.loopback import FakeSlack, FakeTelegram

GROUP_OF_3 = "alertmanager-0.25-firing_apidown_group_of_3.json"


async def delivered(
    notifier: Any, n: EnrichedNotification, thread: Thread | None, progress: Progress | None = None
) -> str | None:
    """What the dispatcher does with a channel: send, then attach the message's charts."""
    ref = await notifier.send(n, thread, progress)
    await notifier.attach(n, ref, thread, progress)
    return ref


def png_size(png: bytes) -> tuple[int, int]:
    assert png.startswith(PNG_SIGNATURE)
    width, height = struct.unpack(">II", png[16:24])
    return width, height


# Which charts


def test_alerts_sharing_an_expression_are_one_chart_with_a_line_each() -> None:
    n = with_series(sample_notification(GROUP_OF_3))
    (chart,) = charts_for(n)
    assert chart.title == "APIDown on binance, bybit and okx"
    assert [s.label for s in chart.series] == ["binance", "bybit", "okx"]
    assert (chart.threshold, chart.comparison) == (0, "==")
    assert chart.firing_since == datetime(2026, 11, 21, 10, 33, 37, 425000, UTC).timestamp()
    assert chart.series[0].points[0] == (START, 1)


def test_an_alerts_several_series_keep_their_names() -> None:
    n = with_series(sample_notification(), labels=["binance /depth", "binance /time"])
    (chart,) = charts_for(n)
    assert chart.title == "APIDown on binance"
    assert [s.label for s in chart.series] == ["binance /depth", "binance /time"]


def test_alerts_of_one_expression_share_its_series_once_the_leads_first() -> None:
    n = with_series(sample_notification(GROUP_OF_3), labels=["binance", "bybit", "okx"])
    (chart,) = charts_for(n)
    assert [s.label for s in chart.series] == ["binance", "bybit", "okx"]


def test_each_expression_is_a_chart_of_its_own_up_to_the_limit() -> None:
    n = with_series(sample_notification(GROUP_OF_3), exprs=["a_seconds", "b", "c"])
    charts = charts_for(n)
    assert len(charts) == MAX_CHARTS == 2
    assert [c.unit for c in charts] == ["seconds", ""]
    assert [[s.label for s in c.series] for c in charts] == [["a_seconds"], ["b"]]


def test_a_gap_in_the_series_is_a_gap_in_the_chart() -> None:
    n = with_series(sample_notification())
    alert = n.firing[0]
    assert alert.context is not None
    context = alert.context.model_copy(update={"series": [plot(values=(1, None, 0))]})
    n = n.model_copy(update={"firing": [alert.model_copy(update={"context": context})]})
    (chart,) = charts_for(n)
    assert math.isnan(chart.series[0].points[1][1])


@pytest.mark.parametrize("kind", ["repeat", "resolved"])
def test_follow_ups_carry_no_chart(kind: str) -> None:
    fixture = "alertmanager-0.25-resolved_apidown_binance.json" if kind == "resolved" else None
    n = sample_notification(fixture or "alertmanager-0.25-firing_apidown_binance.json", kind=kind)
    assert charts_for(with_series(n)) == []


def test_alerts_without_series_carry_no_chart() -> None:
    assert charts_for(sample_notification()) == []


def test_an_escalation_carries_its_chart() -> None:
    n = with_series(sample_notification(kind="escalation"))
    assert len(charts_for(n)) == 1


# Series from Prometheus


@respx.mock
async def test_the_context_keeps_the_expressions_series_with_times_the_alerts_own_first() -> None:
    def series(exchange: str, values: list[str]) -> dict:
        labels = {"exchange": exchange, "job": "crypto-api-monitor", "__name__": "api_up"}
        points = [[1700000000 + 30 * i, v] for i, v in enumerate(values)]
        return {"metric": labels, "values": points}

    result = [series(x, ["1", "NaN", "0"]) for x in ("bybit", "binance", "okx")]
    body = {"status": "success", "data": {"resultType": "matrix", "result": result}}
    respx.post(f"{PROMETHEUS_URL}/api/v1/query_range").respond(json=body)
    payload = AlertmanagerPayload.model_validate_json(fixture_text(GROUP_OF_3))
    alert = payload.firing[0].model_copy(
        update={"generator_url": "http://vm:9090/graph?g0.expr=api_up+%3C+1"}
    )
    async with httpx.AsyncClient() as http:
        builder = ContextBuilder(PrometheusClient(http, PROMETHEUS_URL), 30, PROMETHEUS_URL, 5, 5)
        (context,) = await builder.build([alert])
    assert [s.label for s in context.series] == ["binance", "bybit", "okx"]
    assert context.series[0].points == [(1700000000, 1), (1700000030, None), (1700000060, 0)]
    assert (context.comparison, context.threshold) == ("<", 1)
    data = prompt_data(payload, [context] * 3, PromptBudget(24_000))
    assert '"samples"' in data and "series" not in data and "1700000030" not in data


@pytest.mark.parametrize(
    ("labels", "keys"),
    [
        ([{"a": "1", "b": "x"}, {"a": "2", "b": "x"}], ["a"]),
        ([{"a": "1", "b": "x"}, {"a": "2", "b": "y"}], ["a", "b"]),
        ([{"a": "1"}, {"b": "2"}], ["a", "b"]),
        ([{"a": "1", "__name__": "m"}, {"a": "1", "__name__": "n"}], []),
        ([{"a": "1"}], []),
    ],
)
def test_a_legend_names_series_by_the_labels_that_differ(labels: list, keys: list) -> None:
    assert varying([Series(one, []) for one in labels]) == keys


def test_a_series_label_is_cleaned_and_its_unplottable_points_are_gaps() -> None:
    series = Series(
        {"exchange": "okx\u202e", "endpoint": "/depth"}, [1, math.inf, 2], [0, 30, math.nan]
    )
    plotted = plot_series(series, ["exchange", "endpoint"])
    assert plotted.label == "okx /depth"
    assert plotted.points == [(0, 1), (30, None)]


# Telegram


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    server = await FakeTelegram().start()
    yield server
    await server.stop()


@pytest.fixture
async def telegram_notifier(
    telegram: FakeTelegram,
) -> AsyncIterator[Callable[..., TelegramNotifier]]:
    """Notifiers on the production request class (aiohttp; sendPhoto is its multipart path)."""
    made: list[TelegramNotifier] = []

    def make(*, charts: bool = True) -> TelegramNotifier:
        bot = Bot(telegram.token, base_url=telegram.api_url, request=AiohttpRequest())
        made.append(TelegramNotifier(bot, "-100123", charts=charts))
        return made[-1]

    yield make
    for notifier in made:
        await notifier.close()


async def test_telegram_sends_the_chart_as_a_photo_replying_to_the_message(
    telegram: FakeTelegram,
    telegram_notifier: Callable[..., TelegramNotifier],
) -> None:
    n = with_series(sample_notification(GROUP_OF_3))
    ref = await delivered(telegram_notifier(), n, None)
    (photo,) = telegram.photos
    assert photo["reply_to"] == int(ref or 0) == telegram.sent[0]["message_id"]
    assert png_size(photo["photo"]) == (800, 400)
    assert 10_000 < len(photo["photo"]) < 300_000
    assert (photo["filename"], photo["content_type"]) == ("chart.png", "image/png")
    assert photo["caption"] == "📈 APIDown on binance, bybit and okx"
    assert "parse_mode" not in photo, "a plain caption: label text is never markup"


async def test_telegram_with_charts_off_sends_no_photo(
    telegram: FakeTelegram, telegram_notifier: Callable[..., TelegramNotifier]
) -> None:
    await delivered(telegram_notifier(charts=False), with_series(sample_notification()), None)
    assert telegram.sent and not telegram.photos


async def test_a_retry_sends_neither_the_text_nor_the_chart_again(
    telegram: FakeTelegram, telegram_notifier: Callable[..., TelegramNotifier]
) -> None:
    recorded: dict[str, str | None] = {}

    async def record(step: str, ref: str | None) -> None:
        recorded[step] = ref

    n = with_series(sample_notification())
    notifier = telegram_notifier()
    await delivered(notifier, n, None, Progress(record=record))
    assert set(recorded) == {"part-1", "chart-1"}
    await delivered(notifier, n, None, Progress(recorded))
    assert (len(telegram.sent), len(telegram.photos)) == (1, 1)


async def test_a_refused_photo_is_given_up_and_the_message_stands(
    telegram: FakeTelegram,
    telegram_notifier: Callable[..., TelegramNotifier],
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorded: dict[str, str | None] = {}

    async def record(step: str, ref: str | None) -> None:
        recorded[step] = ref

    n = with_series(sample_notification())
    notifier = telegram_notifier()
    original = notifier._send_photo
    refusal = {"ok": False, "error_code": 400, "description": "Bad Request: IMAGE_PROCESS_FAILED"}

    async def refused(*args, **kwargs):  # the text went out; the Bot API refuses the photo
        telegram.fail_next(400, refusal)
        return await original(*args, **kwargs)

    notifier._send_photo = refused  # type: ignore[method-assign]
    ref = await delivered(notifier, n, None, Progress(record=record))
    assert ref == str(telegram.sent[0]["message_id"]) and not telegram.photos
    assert recorded == {"part-1": ref, "chart-1": None}, "given up: not tried again"
    assert "chart 'apidown on binance' not sent: image_process_failed" in caplog.text.lower()


async def test_a_chart_that_cannot_be_rendered_never_holds_back_the_message(
    telegram: FakeTelegram,
    telegram_notifier: Callable[..., TelegramNotifier],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(data, timeout):
        raise ChartError("chart not rendered within 10s")

    monkeypatch.setattr(chart_steps, "render_async", broken)
    ref = await delivered(telegram_notifier(), with_series(sample_notification()), None)
    assert ref and telegram.sent and not telegram.photos


# Slack


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    server = await FakeSlack().start()
    yield server
    await server.stop()


def slack_notifier(server: FakeSlack, *, charts: bool = True) -> SlackBotNotifier:
    client = AsyncWebClient(
        token=server.token, base_url=server.api_url, retry_handlers=retry_handlers()
    )
    return SlackBotNotifier(client, server.channel_id, charts=charts)


async def test_slack_uploads_the_chart_into_the_messages_thread_in_three_steps(
    slack: FakeSlack,
) -> None:
    n = with_series(sample_notification(GROUP_OF_3))
    ref = await delivered(slack_notifier(slack), n, None)
    methods = [r.method for r in slack.requests]
    assert methods == [
        "chat.postMessage",
        "files.getUploadURLExternal",
        "upload",
        "files.completeUploadExternal",
    ]
    (file,) = slack.files
    assert f"{file['channel']}:{file['thread_ts']}" == ref
    assert png_size(file["data"]) == (800, 400) and file["filename"] == "chart.png"
    assert file["title"] == "APIDown on binance, bybit and okx"
    # what a screen reader says for the image (slack-sdk sends it with the upload URL request)
    announced = slack.requests[1].body
    assert announced["alt_txt"] == "Chart of APIDown on binance, bybit and okx"
    assert announced["filename"] == "chart.png" and int(announced["length"]) == len(file["data"])


async def test_slacks_chart_step_records_the_uploaded_files_id_and_a_retry_uploads_nothing(
    slack: FakeSlack,
) -> None:
    recorded: dict[str, str | None] = {}

    async def record(step: str, ref: str | None) -> None:
        recorded[step] = ref

    n = with_series(sample_notification())
    await delivered(slack_notifier(slack), n, None, Progress(record=record))
    (file,) = slack.files
    assert recorded["chart-1"] == file["id"]  # Slack's own id for the file, e.g. F0FAKE0001
    await delivered(slack_notifier(slack), n, None, Progress(recorded))
    assert len(slack.files) == 1


async def test_an_escalations_chart_goes_into_the_incidents_thread(slack: FakeSlack) -> None:
    first = await delivered(slack_notifier(slack, charts=False), sample_notification(), None)
    assert first
    n = with_series(sample_notification(kind="escalation"))
    await delivered(slack_notifier(slack), n, Thread(first))
    (file,) = slack.files
    assert file["thread_ts"] == first.partition(":")[2]


async def test_a_token_without_files_write_still_pages(
    slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = slack_notifier(slack)
    n = with_series(sample_notification())
    original = notifier._upload

    async def scoped(*args, **kwargs):  # the text went out; a token without files:write
        slack.fail_next(200, {"ok": False, "error": "missing_scope", "needed": "files:write"})
        return await original(*args, **kwargs)

    notifier._upload = scoped  # type: ignore[method-assign]
    ref = await delivered(notifier, n, None)
    assert ref and slack.top_level() and not slack.files
    assert "missing_scope" in caplog.text


async def test_slack_with_charts_off_uploads_nothing(slack: FakeSlack) -> None:
    await delivered(slack_notifier(slack, charts=False), with_series(sample_notification()), None)
    assert [r.method for r in slack.requests] == ["chat.postMessage"]


def test_a_notifications_series_survive_the_store_round_trip() -> None:
    n = with_series(sample_notification())
    again = EnrichedNotification.model_validate(json.loads(n.model_dump_json()))
    assert charts_for(again) == charts_for(n)


# Both channels


async def test_slack_and_telegram_sending_one_message_share_one_rendering_of_its_chart(
    slack: FakeSlack,
    telegram: FakeTelegram,
    telegram_notifier: Callable[..., TelegramNotifier],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drawn: list[str] = []

    async def counting(data, timeout):
        drawn.append(data.title)
        return await render_async(data, timeout)

    monkeypatch.setattr(chart_steps, "render_async", counting)
    n = with_series(sample_notification(GROUP_OF_3))
    await asyncio.gather(
        delivered(slack_notifier(slack), n, None), delivered(telegram_notifier(), n, None)
    )
    assert drawn == ["APIDown on binance, bybit and okx"]
    (file,) = slack.files
    (photo,) = telegram.photos
    assert file["data"] == photo["photo"]
    other = with_series(sample_notification(GROUP_OF_3), labels=["x", "y"])
    await delivered(telegram_notifier(), other, None)
    assert len(drawn) == 2, "another chart is drawn anew"


async def test_in_a_storm_a_chart_past_the_renderers_queue_is_given_up_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = asyncio.Event()

    async def slow(data, timeout):
        await release.wait()
        return PNG_SIGNATURE

    monkeypatch.setattr(chart_steps, "render_async", slow)
    charts = [
        charts_for(with_series(sample_notification(GROUP_OF_3), labels=[str(i)]))[0]
        for i in range(chart_steps.RENDERS_QUEUED + 1)
    ]
    queued = [chart_steps.rendering(data) for data in charts[:-1]]
    assert chart_steps.rendering(charts[0]) is queued[0], "the same chart is shared, not refused"
    with pytest.raises(chart_steps.RendererBusyError, match=r"renderer busy \(4 charts queued\)"):
        chart_steps.rendering(charts[-1])
    release.set()
    assert await asyncio.gather(*queued) == [PNG_SIGNATURE] * len(queued)
    assert await chart_steps.rendering(charts[-1]) == PNG_SIGNATURE


@pytest.fixture(autouse=True)
async def no_renderer_left() -> AsyncIterator[None]:
    yield
    await stop_renderer()
