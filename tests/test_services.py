"""The webhook's process with the pipeline apart (app/services.py's Front): what it shows and builds,
and what it keeps out of memory. The real `serve` with its pipeline process runs in
tests/e2e/test_e2e_pipeline_process.py, and Slack's clicks through it in test_e2e_silences.py."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app import services
from app.config import Settings
from app.notifiers.build import build_notifiers
from app.notifiers.channels import channel_names
from app.services import build_front
from app.store import StoreError

SLACK_BOT = {"slack_bot_token": "xoxb-fake", "slack_channel": "C0FAKE"}
SLACK_WEBHOOK = {"slack_webhook_url": "https://hooks.slack.invalid/services/T/B/fake"}
TELEGRAM = {"telegram_bot_token": "123:fake", "telegram_chat_id": "-100"}
BUTTONS = {
    **SLACK_BOT,
    "slack_signing_secret": "fake-signing-secret",
    "alertmanager_url": "http://127.0.0.1:9",
}
# What the pipeline's process loads and the webhook's must not (a third of its memory)
PIPELINE_LIBRARIES = [
    "slack_sdk",
    "telegram",
    "aiohttp",
    "httpx",
    "promql_parser",
    "yaml",
    "psycopg",
]
# What the webhook's process loads and the pipeline's must not
WEBHOOK_LIBRARIES = ["fastapi", "starlette", "uvicorn", "psycopg"]


@pytest.mark.parametrize(
    "configured",
    [
        {},
        SLACK_BOT,
        SLACK_WEBHOOK,
        {**SLACK_BOT, **SLACK_WEBHOOK},
        TELEGRAM,
        {**SLACK_BOT, **TELEGRAM},
    ],
)
async def test_the_channels_named_are_the_channels_built(
    make_settings: Callable[..., Settings], configured: dict[str, str]
) -> None:
    notifiers = build_notifiers(make_settings(**configured))
    try:
        assert channel_names(make_settings(**configured)) == [n.name for n in notifiers]
    finally:
        for notifier in notifiers:
            close = getattr(notifier, "close", None)
            if close is not None:
                await close()


async def test_the_front_shows_the_channels_and_model_and_no_pipeline_before_its_start(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        **SLACK_WEBHOOK, **TELEGRAM, pipeline_process=True, llm_api_key="sk-fake", workers=3
    )
    front = await build_front(settings)
    try:
        assert front.channels() == {"slack": True, "telegram": True, "console": False}
        assert (front.llm.enabled, front.llm.model) == (True, settings.llm_model)
        assert front.slack_actions is None  # no buttons configured
        assert front.pipeline_process is None
        assert await front.pipeline_status() == (0, 3, None)
        front.wake()  # no pipeline yet: nothing to wake, and no error
        await front.store.ping()
    finally:
        await front.close()
    with pytest.raises(StoreError):
        await front.store.ping()


async def test_the_front_without_a_key_shows_the_llm_off_and_the_console(
    make_settings: Callable[..., Settings],
) -> None:
    front = await build_front(make_settings(pipeline_process=True, llm_api_key=None))
    try:
        assert front.llm.enabled is False
        assert front.channels() == {"slack": False, "telegram": False, "console": True}
    finally:
        await front.close()


@pytest.mark.parametrize(("configured", "acts"), [(BUTTONS, True), (SLACK_BOT, False)])
async def test_the_front_acts_on_slack_clicks_only_with_slack_buttons_on(
    make_settings: Callable[..., Settings], configured: dict[str, str], acts: bool
) -> None:
    front = await build_front(make_settings(**configured, pipeline_process=True))
    try:
        assert (front.slack_actions is not None) is acts
        if acts:
            assert front.slack_actions is not None
            assert front.slack_actions.signing_secret == "fake-signing-secret"
    finally:
        await front.close()


async def test_a_front_that_fails_to_build_closes_what_it_had_opened(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = []
    real_open_store = services.open_store

    async def recorded(url: str, pool_size: int) -> Any:
        opened.append(await real_open_store(url, pool_size))
        return opened[-1]

    def broken(url: str, store: object) -> Any:
        raise RuntimeError("the silencer cannot be built")

    monkeypatch.setattr(services, "open_store", recorded)
    monkeypatch.setattr(services, "open_silencer", broken)
    with pytest.raises(RuntimeError, match="cannot be built"):
        await build_front(make_settings(**BUTTONS, pipeline_process=True))
    [store] = opened
    with pytest.raises(StoreError):
        await store.ping()


async def test_a_front_closes_its_clients_and_store_even_when_stopping_its_pipeline_fails(
    make_settings: Callable[..., Settings],
) -> None:
    front = await build_front(make_settings(**BUTTONS, pipeline_process=True))

    class Failing:
        async def stop(self) -> None:
            raise RuntimeError("the pipeline would not stop")

    front.pipeline_process = Failing()  # type: ignore[assignment]
    with pytest.raises(RuntimeError, match="would not stop"):
        await front.close()
    with pytest.raises(StoreError):
        await front.store.ping()


LOADED = """
import asyncio, json, sys
from app.config import Settings

async def main(overrides):
    settings = Settings(_env_file=None, pipeline_process=True, **overrides)
    {body}

overrides = json.loads(sys.argv[1])
asyncio.run(main(overrides))
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}})))
"""


def loaded(tmp_path: Path, body: str, **overrides: Any) -> set[str]:
    """The top-level packages a fresh interpreter has loaded after running `body`."""
    overrides.setdefault("store_url", f"sqlite:///{tmp_path}/enricher.db")
    script = LOADED.format(body=body)
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(overrides)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


FRONT_OPENED = """
    import uvicorn, app.cli, app.main
    from app.services import build_front
    app.main.create_app(settings)
    front = await build_front(settings)
    front.channels()
    await front.close()
"""


def test_the_webhooks_process_loads_none_of_the_pipelines_libraries(tmp_path: Path) -> None:
    modules = loaded(tmp_path, FRONT_OPENED, **SLACK_BOT, **TELEGRAM)
    assert {"fastapi", "uvicorn"} <= modules  # the script ran what `serve` loads
    assert modules.isdisjoint(PIPELINE_LIBRARIES), modules & set(PIPELINE_LIBRARIES)


def test_the_webhooks_process_loads_slack_sdk_and_httpx_for_slack_buttons_only(
    tmp_path: Path,
) -> None:
    modules = loaded(tmp_path, FRONT_OPENED, **BUTTONS, **TELEGRAM)
    assert {"slack_sdk", "httpx"} <= modules  # and the Alertmanager client a click needs
    assert modules.isdisjoint(["telegram", "promql_parser", "psycopg"])


def test_processes_whose_store_is_postgresql_load_no_sqlite3(tmp_path: Path) -> None:
    body = """
    import uvicorn, app.cli, app.main, app.pipeline_child, app.store.postgres
    app.main.create_app(settings)
"""
    modules = loaded(tmp_path, body, store_url="postgresql://enricher:fake@127.0.0.1:9/enricher")
    assert {"fastapi", "psycopg"} <= modules  # both processes' code and the backend, loaded
    assert "sqlite3" not in modules


def test_the_pipelines_process_loads_no_web_server_and_no_unused_store_driver(
    tmp_path: Path,
) -> None:
    modules = loaded(tmp_path, "import app.pipeline_child")
    assert {"slack_sdk", "telegram", "promql_parser"} <= modules  # what it runs, loaded
    assert modules.isdisjoint(WEBHOOK_LIBRARIES), modules & set(WEBHOOK_LIBRARIES)
