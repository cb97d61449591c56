"""Real Prometheus and Alertmanager drive the service; Slack, Telegram and the LLM are loopback fakes."""

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

    await quiet(svc)  # then nothing extra arrives
    assert len(fakes.slack.messages) == 2 and len(fakes.telegram.sent) == 2
    assert len(fakes.llm.requests) == 1, "resolved alerts never call the LLM"
