"""A throwaway PostgreSQL server for tests: its own data directory, a free loopback port, pg_ctl.

The server binaries (`initdb`, `pg_ctl`, `postgres`) come from PATH, else from the highest version
under /usr/lib/postgresql/*/bin, where Debian's `postgresql` package puts them. initdb refuses to run
as root, so as root (this machine and CI) every server process runs as the `postgres` system user,
which owns the data directory.

Tuned for tests, not for durability against power loss: fsync and full_page_writes are off (a crash
of the operating system could corrupt the cluster; it is thrown away anyway), but
synchronous_commit stays on, so a commit survives a SIGKILL of the server (`kill()`) exactly as it
would in production: the WAL is written to the operating system before COMMIT returns.
Only TCP on 127.0.0.1 is served (no Unix socket), with trust authentication.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

DEBIAN_PACKAGE = "postgresql"
DEBIAN_ROOT = Path("/usr/lib/postgresql")
SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")
SYSTEM_USER = "postgres"
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",  # TCP only: no socket directory to own or share
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "on",  # a SIGKILLed server keeps what it acknowledged
    "shared_buffers": "32MB",
    "max_connections": "200",
    "log_line_prefix": "'%m [%p] %d '",
}


class PostgresError(RuntimeError):
    """The server could not be set up, started or stopped; carries pg_ctl's or initdb's output."""


class PostgresNotInstalledError(PostgresError):
    pass


@dataclass(frozen=True)
class Binaries:
    initdb: Path
    pg_ctl: Path
    postgres: Path


def _version_key(directory: Path) -> tuple[int, ...]:
    """`/usr/lib/postgresql/15` -> (15,), `9.6` -> (9, 6); anything else sorts first."""
    try:
        return tuple(int(part) for part in directory.name.split("."))
    except ValueError:
        return (-1,)


def find_binaries() -> Binaries:
    """The server binaries, from PATH or the newest Debian install; a clear error without them."""
    on_path = [shutil.which(name) for name in SERVER_BINARIES]
    if all(on_path):
        return Binaries(*(Path(found) for found in on_path if found))
    versions = sorted(
        (d for d in DEBIAN_ROOT.glob("*") if d.is_dir()), key=_version_key, reverse=True
    )
    for version in versions:
        paths = [version / "bin" / name for name in SERVER_BINARIES]
        if all(os.access(path, os.X_OK) for path in paths):
            return Binaries(*paths)
    raise PostgresNotInstalledError(
        f"PostgreSQL's server programs ({', '.join(SERVER_BINARIES)}) are neither on PATH nor in "
        f"{DEBIAN_ROOT}/*/bin: install the Debian package `{DEBIAN_PACKAGE}` "
        f"(`apt-get install {DEBIAN_PACKAGE}`, or `make e2e-deps`)"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _zombie_or_gone(pid: int) -> bool:
    """Dead: no such process, or one that exited and waits for a parent (pid 1) to reap it."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return status.rpartition(")")[2].split()[0] in ("Z", "X")


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                members.append(int(entry.name))
    return members


class PostgresServer:
    """One PostgreSQL cluster in `directory` (its `data/` and `postgres.log`), on one port.

    `start()` initialises the cluster the first time; `stop()`, `kill()` and `restart()` keep the
    data directory and the port, so clients can reconnect to the same URL.
    """

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.data = directory / "data"
        self.log = directory / "postgres.log"
        self.port = port or free_port()
        self._binaries: Binaries | None = None
        self._account = pwd.getpwnam(SYSTEM_USER) if os.geteuid() == 0 else None

    @classmethod
    def attach(cls, directory: Path) -> PostgresServer:
        """The server another process set up in `directory` (it runs; its port is in its config)."""
        config = (directory / "data" / "postgresql.conf").read_text()
        ports = [line.split("=")[1] for line in config.splitlines() if line.startswith("port =")]
        if not ports:
            raise PostgresError(f"{directory} holds no server set up by tests/pgserver.py")
        return cls(directory, port=int(ports[-1]))

    @staticmethod
    def available() -> bool:
        try:
            find_binaries()
        except PostgresNotInstalledError:
            return False
        return True

    @property
    def binaries(self) -> Binaries:
        if self._binaries is None:
            self._binaries = find_binaries()
        return self._binaries

    @property
    def url(self) -> str:
        return self.url_of("postgres")

    def url_of(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a server program, as the postgres user when we are root."""
        options: dict[str, Any] = {}
        if self._account is not None:
            options = {
                "user": self._account.pw_uid,
                "group": self._account.pw_gid,
                "extra_groups": [],
            }
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}
        return subprocess.run(
            [str(arg) for arg in argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.directory,
            env=env,
            **options,
        )

    def _check(self, result: subprocess.CompletedProcess[str], what: str) -> None:
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise PostgresError(
                f"{what} failed ({result.returncode}): {result.stderr.strip() or result.stdout}"
                + (f"\nserver log:\n{log}" if log else "")
            )

    def _reachable(self) -> None:
        """As root, every directory above the data must let the postgres user through."""
        if self._account is None:
            return
        for parent in self.directory.resolve().parents:
            mode = parent.stat()
            if not (
                mode.st_mode & stat.S_IXOTH
                or (mode.st_uid == self._account.pw_uid and mode.st_mode & stat.S_IXUSR)
                or (mode.st_gid == self._account.pw_gid and mode.st_mode & stat.S_IXGRP)
            ):
                raise PostgresError(
                    f"{parent} is closed to the `{SYSTEM_USER}` user the server runs as (we are "
                    "root): put the server's directory somewhere it can reach, e.g. under /tmp"
                )

    def _own(self, path: Path) -> None:
        if self._account is not None:
            os.chown(path, self._account.pw_uid, self._account.pw_gid)

    def _initdb(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._reachable()
        self._own(self.directory)
        self.data.mkdir(mode=0o700, exist_ok=True)
        self._own(self.data)
        self.log.touch()
        self._own(self.log)
        result = self._run(
            self.binaries.initdb,
            "-D",
            self.data,
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        )
        self._check(result, "initdb")
        settings = "".join(f"{name} = {value}\n" for name, value in SETTINGS.items())
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"\n# tests/pgserver.py\nport = {self.port}\n{settings}")

    def running(self) -> bool:
        return self._postmaster_pid() is not None

    def _postmaster_pid(self) -> int | None:
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            return None
        return None if _zombie_or_gone(pid) else pid

    def start(self, timeout: float = 60) -> PostgresServer:
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        result = self._run(
            self.binaries.pg_ctl,
            "start",
            "-w",
            "-t",
            str(int(timeout)),
            "-D",
            self.data,
            "-l",
            self.log,
            "-p",
            self.binaries.postgres,
            timeout=timeout + 10,
        )
        self._check(result, f"pg_ctl start (port {self.port})")
        return self

    def stop(self, mode: str = "fast", timeout: float = 60) -> None:
        """pg_ctl stop -m fast|smart|immediate; nothing to do when the server is not running."""
        if not self.running():
            return
        result = self._run(
            self.binaries.pg_ctl,
            "stop",
            "-w",
            "-t",
            str(int(timeout)),
            "-m",
            mode,
            "-D",
            self.data,
            timeout=timeout + 10,
        )
        self._check(result, f"pg_ctl stop -m {mode}")

    def restart(self) -> PostgresServer:
        """Stop if running, then start on the same port and data directory."""
        self.stop()
        return self.start()

    def kill(self, timeout: float = 30) -> None:
        """SIGKILL the postmaster and its backends at once, as a crash of the host would.

        pg_ctl starts the postmaster as a process-group leader, so its backends share its group.
        Returns once none of them is left (zombies aside), so `start()` can follow at once:
        PostgreSQL then recovers from its WAL.
        """
        pid = self._postmaster_pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while _group_members(pid):
            if time.monotonic() > deadline:
                raise PostgresError(f"PostgreSQL processes of group {pid} outlived SIGKILL")
            time.sleep(0.05)
        # A postmaster nobody reaped yet still answers kill(pid, 0), and PostgreSQL would take its
        # lock file for a live server's: the process is dead, so the file goes.
        (self.data / "postmaster.pid").unlink(missing_ok=True)

    def connect(self, database: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(self.url_of(database), autocommit=True, connect_timeout=10)

    def create_database(self, name: str) -> str:
        """A new, empty database; returns its URL."""
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_of(name)

    def drop_database(self, name: str) -> None:
        """Drop it, disconnecting whoever is still connected."""
        with self.connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
