from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from fastapi import FastAPI

from app.config import Settings
from app.main import create_app
from tests.capabilities import missing
from tests.fakes import LLM_URL, PROMETHEUS_URL
from tests.pgserver import PostgresNotInstalledError, PostgresServer, find_binaries


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "store_url": f"sqlite:///{tmp_path}/enricher.db",
            "prometheus_url": PROMETHEUS_URL,
            "llm_base_url": LLM_URL,
            "llm_concurrency": 2,
            "workers": 2,
            "pipeline_process": False,  # in the test's process (a child runs in e2e tests)
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


@pytest.fixture(autouse=True)
def _root_logger_as_it_was() -> Iterator[None]:
    """A test that configures logging (the service does at start) leaves the root logger as it
    found it: a stale handler would write to a closed stream, and its secret scrubber would fold
    every later test's tracebacks into text before caplog sees them."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


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


# `make mutate` starts one server for the whole run and names its directory here: every mutant's
# test session (a forked process each) then attaches to it instead of paying for a server of its own.
SHARED_POSTGRES_DIR = "TEST_POSTGRES_DIR"


def _binaries_or_missing() -> None:
    try:
        find_binaries()
    except PostgresNotInstalledError as exc:  # its message names the package to install
        missing(str(exc))


@contextmanager
def _throwaway_server() -> Iterator[PostgresServer]:
    # Not under pytest's own temporary directory: that is private to us (0700), and as root the
    # server runs as the postgres user, which must reach its data directory.
    directory = Path(tempfile.mkdtemp(prefix="pytest-postgres-"))
    server = PostgresServer(directory).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the session (tests/pgserver.py), stopped at the end.

    Without PostgreSQL's server programs the tests that need it skip, except on CI (CI=true),
    where they fail: CI installs the `postgresql` package (make e2e-deps) and must run them.
    With TEST_POSTGRES_DIR set, the session attaches to that running server and leaves it running.
    """
    _binaries_or_missing()
    if shared := os.environ.get(SHARED_POSTGRES_DIR):
        yield PostgresServer.attach(Path(shared))
        return
    with _throwaway_server() as server:
        yield server


@contextmanager
def _fresh_database(server: PostgresServer) -> Iterator[str]:
    if not server.running():  # a test stopped or killed it: later ones still get one
        server.start()
    name = f"test_{uuid.uuid4().hex[:16]}"
    yield server.create_database(name)
    if server.running():
        server.drop_database(name)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the session's server, dropped after the test."""
    with _fresh_database(postgres_server) as url:
        yield url


@pytest.fixture
def stoppable_postgres(postgres_server: PostgresServer) -> Iterator[tuple[PostgresServer, str]]:
    """A server the test may stop, and a fresh database on it: the session's server, unless other
    processes share that one (TEST_POSTGRES_DIR), when the test gets a server of its own."""
    if not os.environ.get(SHARED_POSTGRES_DIR):
        with _fresh_database(postgres_server) as url:
            yield postgres_server, url
        return
    with _throwaway_server() as server, _fresh_database(server) as url:
        yield server, url


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under `make mutate`, a mutant's tests run fastest first: a killed mutant stops at its first
    failure (-x), so the quick unit test that catches it should not wait behind slow ones."""
    if "__mutmut_" not in os.environ.get("MUTANT_UNDER_TEST", ""):
        return
    try:  # mutmut runs each mutant's session in mutants/, next to the timings of its stats run
        durations = json.loads(Path("mutmut-stats.json").read_text())["duration_by_test"]
    except (OSError, ValueError, KeyError):
        return
    items.sort(key=lambda item: durations.get(item.nodeid, 0.0))
