"""The throwaway PostgreSQL server harness (tests/pgserver.py) the PostgreSQL store tests run on."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.pgserver import PostgresNotInstalledError, PostgresServer, find_binaries


@pytest.fixture
def server(postgres_server: PostgresServer) -> Iterator[PostgresServer]:
    """A server of the test's own (needs the binaries, as `postgres_server` checks)."""
    directory = Path(tempfile.mkdtemp(prefix="pytest-pgserver-"))
    own = PostgresServer(directory)
    yield own
    own.stop(mode="immediate")
    shutil.rmtree(directory, ignore_errors=True)


def select_one(url: str) -> int:
    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute("SELECT 1").fetchone()
    assert row is not None
    return int(row[0])


def test_server_restarts_on_the_same_port_and_keeps_its_data(server: PostgresServer) -> None:
    server.start()
    url = server.create_database("kept")
    assert select_one(url) == 1
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (x int); INSERT INTO t VALUES (42)")

    server.stop()
    assert not server.running()
    with pytest.raises(psycopg.OperationalError):
        select_one(url)

    server.restart()
    assert select_one(url) == 1
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT x FROM t").fetchall() == [(42,)]


def test_killed_server_starts_again_with_every_committed_row(server: PostgresServer) -> None:
    url = server.start().create_database("crashed")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (x int)")
        for x in range(100):
            conn.execute("INSERT INTO t VALUES (%s)", (x,))

    server.kill()
    assert not server.running()
    server.start()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (100,)


def test_session_server_hands_each_test_a_fresh_database(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
    assert tables == (0,)
    assert postgres_url.startswith("postgresql://postgres@127.0.0.1:")


def test_missing_binaries_name_the_debian_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("tests.pgserver.DEBIAN_ROOT", tmp_path / "nothing")
    assert not PostgresServer.available()
    with pytest.raises(PostgresNotInstalledError, match="install the Debian package `postgresql`"):
        find_binaries()


def test_binaries_come_from_the_newest_debian_version_when_not_on_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for version in ("9.6", "13", "15"):
        for name in ("initdb", "pg_ctl", "postgres"):
            program = tmp_path / version / "bin" / name
            program.parent.mkdir(parents=True, exist_ok=True)
            program.write_text("#!/bin/sh\n")
            program.chmod(0o755)
    (tmp_path / "16" / "bin").mkdir(parents=True)  # a client-only install: no server programs
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr("tests.pgserver.DEBIAN_ROOT", tmp_path)
    assert find_binaries().pg_ctl == tmp_path / "15" / "bin" / "pg_ctl"


def test_attach_finds_a_running_server_by_its_directory(server: PostgresServer) -> None:
    server.start()
    attached = PostgresServer.attach(server.directory)
    assert attached.port == server.port
    assert attached.running()
    with attached.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
