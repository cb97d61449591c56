"""No token, key or password in logs, /health, /metrics, error bodies, prompts or messages."""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import eventually
from tests.e2e.stack import ROOT, WEBHOOK_TOKEN
from tests.loopback import FAKE_SLACK_TOKEN

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

WRONG_LLM_KEY = "sk-fake-wrong-llm-key-0123456789abcdef"
PASSWORD = "fake-basic-password-e2e"
PROMETHEUS_TOKEN = "fake-prometheus-bearer-token"


async def test_secrets_never_leave_the_service(stack, exporter, fakes, tmp_path: Path) -> None:
    secrets = [
        WEBHOOK_TOKEN,
        WRONG_LLM_KEY,
        PASSWORD,
        PROMETHEUS_TOKEN,
        FAKE_SLACK_TOKEN,
        fakes.telegram.token,
    ]
    env = {
        "LLM_API_KEY": WRONG_LLM_KEY,
        "WEBHOOK_USERNAME": "am",
        "WEBHOOK_PASSWORD": PASSWORD,
        "PROMETHEUS_TOKEN": PROMETHEUS_TOKEN,
        "LOG_LEVEL": "DEBUG",
    }
    exporter.set("binance")
    svc = await stack(**env)
    exporter.set("binance", healthy=False)
    [message] = await eventually(fakes.slack.top_level, what="the firing message")
    assert "invalid LLM API key (401)" in json.dumps(message), "the error path ran"
    await eventually(lambda: fakes.telegram.sent, what="Telegram")

    bodies = []
    async with httpx.AsyncClient() as client:
        url = svc.service_url
        bodies.append((await client.post(f"{url}/alerts", content=b"{}")).text)
        bodies.append(
            (await client.post(f"{url}/alerts", auth=("am", "wrong"), content=b"{}")).text
        )
        bodies.append(
            (await client.post(f"{url}/alerts", auth=("am", PASSWORD), content=b"[")).text
        )
        bodies.append((await client.get(f"{url}/health")).text)
        bodies.append((await client.get(f"{url}/metrics")).text)
        bodies.append((await client.get(f"{url}/openapi.json")).text)

    check_env = {
        **os.environ,
        **fakes.service_env(),
        **env,
        "PROMETHEUS_URL": svc.prometheus_url,
        "STORE_URL": f"sqlite:///{tmp_path / 'check.db'}",
        "WEBHOOK_TOKEN": WEBHOOK_TOKEN,
    }
    check = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app", "check"],
        capture_output=True,
        text=True,
        env=check_env,
        cwd=ROOT,
        check=False,
    )
    assert "llm         FAIL     invalid LLM API key (401)" in check.stdout

    await asyncio.to_thread(svc.stop)
    logs = {p.name: p.read_text(errors="replace") for p in tmp_path.glob("*.log")}
    assert "DEBUG" in logs["service.log"], "scanned at the most talkative level"
    prompts = [json.dumps(r.body["messages"]) for r in fakes.llm.requests]
    messages = [json.dumps(m) for m in fakes.slack.messages.values()]
    messages += [m["text"] for m in fakes.telegram.sent]
    places = {
        **logs,
        "check": check.stdout + check.stderr,
        "prompts": "\n".join(prompts),
        "messages": "\n".join(messages),
        "bodies": "\n".join(bodies),
    }
    leaks = [
        (secret, where) for secret in secrets for where, text in places.items() if secret in text
    ]
    assert not leaks
