from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from fastapi import FastAPI

from app.config import Settings
from app.main import create_app
from tests.fakes import LLM_URL, PROMETHEUS_URL


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "store_url": f"sqlite:///{tmp_path}/enricher.db",
            "prometheus_url": PROMETHEUS_URL,
            "llm_base_url": LLM_URL,
            "llm_concurrency": 2,
            "_env_file": None,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture(autouse=True)
def respx_mock() -> respx.MockRouter:
    """Every test: httpx requests go to respx routes or fail; nothing reaches a network."""
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as mock:
        yield mock


@pytest.fixture
async def running_app() -> AsyncIterator[Callable[[Settings], Any]]:
    """Start create_app(settings) with its lifespan; yields (app, client) for each call."""
    contexts: list[Any] = []

    async def start(settings: Settings) -> tuple[FastAPI, httpx.AsyncClient]:
        app = create_app(settings)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc")
        contexts.append((lifespan, client))
        return app, client

    yield start
    for lifespan, client in reversed(contexts):
        await client.aclose()
        await lifespan.__aexit__(None, None, None)
