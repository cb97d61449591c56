"""Fuzz POST /alerts from the service's own OpenAPI schema (schemathesis), with the real channels' fakes.

Checks: no 5xx (there is no store failure here), /health stays 200, and nothing accepted is lost:
every accepted notification reaches both Slack and the strict fake Telegram.
"""

import asyncio
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import eventually
from tests.e2e.stack import WEBHOOK_TOKEN

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def schemathesis() -> str:
    found = Path(sys.executable).with_name("schemathesis")
    return str(found) if found.exists() else shutil.which("schemathesis") or "schemathesis"


async def test_fuzzed_webhooks_never_5xx_and_every_accepted_one_is_delivered(
    stack, fakes, tmp_path
) -> None:
    svc = await stack(
        service_only=True, LLM_API_KEY=""
    )  # rules only: the fuzz is about the service
    command = [
        schemathesis(),
        "run",
        f"{svc.service_url}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--header",
        f"Authorization: Bearer {WEBHOOK_TOKEN}",
        "--max-examples",
        "150",
        "--seed",
        "20261121",
        "--workers",
        "2",
        "--phases",
        "examples,coverage,fuzzing",
        "--suppress-health-check",
        "all",
    ]
    result = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, check=False, timeout=480
    )
    (tmp_path / "schemathesis.log").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout[-4000:]

    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{svc.service_url}/health")).status_code == 200

        async def backlog() -> int:
            health = (await client.get(f"{svc.service_url}/health")).json()
            return int(health["components"]["workers"]["backlog"])

        for _ in range(600):
            if await backlog() == 0:
                break
            await asyncio.sleep(0.1)
        assert await backlog() == 0
        metrics = (await client.get(f"{svc.service_url}/metrics")).text
    accepted = float(re.search(r'webhooks_total\{outcome="accepted"\} (\S+)', metrics).group(1))
    assert accepted >= 10, "the fuzz reached the store"
    await eventually(lambda: len(fakes.slack.messages) == accepted, what="every accepted in Slack")
    await eventually(
        lambda: len(fakes.telegram.sent) == accepted, what="every accepted in Telegram"
    )
    print(f"schemathesis: {result.stdout.strip().splitlines()[-1]}; accepted {accepted:.0f}")
