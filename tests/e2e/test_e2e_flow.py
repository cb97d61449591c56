"""Real Prometheus and Alertmanager drive the service; Slack, Telegram and the LLM are loopback fakes."""

import os
import struct
from pathlib import Path

import pytest

from tests.e2e.conftest import eventually, quiet
from tests.loopback import all_text

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


async def test_firing_then_resolved_arrive_diagnosed_and_threaded(stack, exporter, fakes) -> None:
    exporter.set("binance")
    svc = await stack()  # returns once Prometheus holds some healthy history
    exporter.set("binance", healthy=False)

    [root] = await eventually(fakes.slack.top_level, what="the firing message in Slack")
    text = "\n".join(all_text(root))
    assert "FIRING: APIDown on binance" in text
    assert "[fake-llm] binance failing; current value 0" in text, "the model's diagnosis"
    assert "now *0* · min 0 · max 1" in text, "real metric values from Prometheus"
    assert "█" in text and "▁" in text, "the sparkline shows before and after the threshold"
    assert "Diagnosis source: model deepseek-chat" in text
    [chat] = fakes.llm.requests
    prompt = chat.body["messages"][1]["content"]
    assert (
        '"current":0' in prompt
        and '"maximum":1' in prompt
        and '"expr":"api_health_status"' in prompt
    )
    first = await eventually(lambda: fakes.telegram.sent, what="the firing message in Telegram")
    assert "FIRING: APIDown on binance" in first[0]["visible"]

    # The chart of the real series: a photo replying to the Telegram message, a file in the
    # Slack message's thread (files_upload_v2's three steps, checked by the fake).
    [photo] = await eventually(lambda: fakes.telegram.photos, what="the chart in Telegram")
    assert photo["reply_to"] == first[0]["message_id"]
    assert photo["caption"] == "📈 APIDown on binance"
    [file] = await eventually(lambda: fakes.slack.files, what="the chart in Slack")
    assert file["thread_ts"] == root["ts"] and file["title"] == "APIDown on binance"
    for png in (photo["photo"], file["data"]):
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and 10_000 < len(png) < 300_000
        assert struct.unpack(">II", png[16:24]) == (800, 400)
    if out := os.environ.get("E2E_CHART_OUT"):  # the README's example chart (docs/)
        Path(out).write_bytes(file["data"])

    exporter.set("binance", healthy=True)
    [reply] = await eventually(lambda: fakes.slack.replies(root["ts"]), what="the resolved reply")
    assert "RESOLVED: APIDown on binance" in reply["text"]
    # The reply goes first, then the original is updated: wait for it, not just for the reply.
    await eventually(
        lambda: fakes.slack.messages[root["ts"]].get("updated") is True,
        what="the original message marked resolved",
    )
    await eventually(lambda: len(fakes.telegram.sent) == 2, what="the Telegram reply")
    assert fakes.telegram.sent[1]["reply_to"] == fakes.telegram.sent[0]["message_id"]

    await quiet(svc)  # then nothing extra arrives: no chart with a follow-up either
    assert len(fakes.slack.messages) == 2 and len(fakes.telegram.sent) == 2
    assert len(fakes.slack.files) == 1 and len(fakes.telegram.photos) == 1
    assert len(fakes.llm.requests) == 1, "resolved alerts never call the LLM"
