"""The processes the bench measures: the service (`python -m app serve`) and the bare app, and the
stores behind the service (a fresh SQLite file, or a fresh database on a throwaway PostgreSQL server
from tests/pgserver.py, for each service process).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import aiohttp

from bench.payloads import ROOT
from tests.pgserver import PostgresServer

WEBHOOK_TOKEN = "bench-webhook-token"  # a throwaway token for a loopback server
# Settings the service reads from the environment: none is inherited from the bench's own.
SETTING_PREFIXES = (
    "HOST",
    "PORT",
    "WEBHOOK_",
    "MAX_",
    "ALLOW_",
    "STORE_",
    "DEDUP_",
    "LEASE_",
    "RETENTION_",
    "PROMETHEUS_",
    "CONTEXT_",
    "LLM_",
    "HOLYSHEEP_",
    "ANALYZER_",
    "ANALYSIS_",
    "SLACK_",
    "TELEGRAM_",
    "ALERTMANAGER_",
    "PROMPTS_",
    "LOG_",
    "WORKERS",
    "PYTHONPATH",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def vm_hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


def inherited_env() -> dict[str, str]:
    """The bench's environment without anything the service would read as a setting."""
    return {k: v for k, v in os.environ.items() if not k.upper().startswith(SETTING_PREFIXES)}


@dataclass
class Server:
    """A server process on a loopback port, its log, and what it is (service or bare)."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def peak_rss_mib(self) -> tuple[float, float]:
        """VmHWM, the most resident memory each has had, in MiB: of the process, and of its
        pipeline process (0 with the pipeline in the process; not the chart renderer: a process
        at nice +10, drawing only)."""
        return vm_hwm_mib(self.process.pid), sum(map(vm_hwm_mib, self.pipeline_pids()))

    def pipeline_pids(self) -> list[int]:
        pids = []
        for children in Path(f"/proc/{self.process.pid}/task").glob("*/children"):
            for pid in map(int, children.read_text().split()):
                with contextlib.suppress(OSError):
                    if b"app.pipeline_child" in Path(f"/proc/{pid}/cmdline").read_bytes():
                        pids.append(pid)
        return pids

    def log_tail(self, chars: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self) -> None:
        """SIGTERM (a graceful stop), SIGKILL if it takes longer than 30 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    async def wait_ready(self, limit: float = 60) -> None:
        """Until GET /health answers 200; a process that exits first ends the bench with its log."""
        deadline = asyncio.get_running_loop().time() + limit
        async with aiohttp.ClientSession() as session:
            while asyncio.get_running_loop().time() < deadline:
                if self.process.poll() is not None:
                    raise SystemExit(
                        f"{self.name} exited ({self.process.returncode}):\n{self.log_tail()}"
                    )
                try:
                    async with session.get(f"{self.url}/health") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        self.stop()
        raise SystemExit(f"{self.name} not ready after {limit:.0f} s:\n{self.log_tail()}")


@dataclass
class Launcher:
    """Starts service and bare processes; the service runs the code of `app_dir`."""

    app_dir: Path
    workdir: Path
    fakes_env: dict[str, str]
    _count: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def service_env(self, port: int, store_url: str, extra: dict[str, str]) -> dict[str, str]:
        return {
            **inherited_env(),
            **self.fakes_env,
            "PYTHONPATH": str(self.app_dir),
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "STORE_URL": store_url,
            "LOG_LEVEL": "WARNING",
            "WEBHOOK_TOKEN": WEBHOOK_TOKEN,
            "ALERTMANAGER_URL": "http://127.0.0.1:9093",  # only shown in links, never contacted
            **extra,
        }

    def service(self, store_url: str, extra: dict[str, str]) -> Server:
        """`python -m app serve` from a directory of its own (no .env), on a free port."""
        number = next(self._count)
        port = free_port()
        home = self.workdir / f"service-{number:02d}"
        home.mkdir()
        log = self.workdir / f"service-{number:02d}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "app", "serve"],
                cwd=home,
                env=self.service_env(port, store_url, extra),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return Server("service", process, port, log)

    def bare(self) -> Server:
        """bench/bare.py from this checkout, served as the service is."""
        number = next(self._count)
        port = free_port()
        log = self.workdir / f"bare-{number:02d}.log"
        env = {**inherited_env(), "PYTHONPATH": str(ROOT)}
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "bench.bare", "--port", str(port)],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return Server("bare FastAPI", process, port, log)

    def service_code(self) -> str:
        """Where the service's `app` package is imported from, with these settings, and what
        uvicorn serves it with: uvloop and httptools when installed (loop and http "auto"),
        else asyncio and h11; the bare app gets the same."""
        script = (
            "import app, importlib.util as u; "
            "loop = 'uvloop' if u.find_spec('uvloop') else 'asyncio'; "
            "http = 'httptools' if u.find_spec('httptools') else 'h11'; "
            "print(f'{app.__file__}; uvicorn on {loop} + {http}')"
        )
        probe = subprocess.run(
            [sys.executable, "-c", script],
            cwd=self.workdir,
            env={**inherited_env(), "PYTHONPATH": str(self.app_dir)},
            capture_output=True,
            text=True,
            check=False,
        )
        return probe.stdout.strip() or probe.stderr.strip()


def describe_checkout(path: Path) -> str:
    """`<short commit>` (`+ uncommitted changes`) of a git checkout, or just its path."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(path), "status", "--porcelain", "--", "app", "prompts"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return str(path)
    return f"{path} at {commit}" + (" + uncommitted changes in app/ or prompts/" if dirty else "")


class Stores:
    """Fresh stores of one backend: a new SQLite file, or a new database on one PostgreSQL server
    started for the bench and thrown away after it."""

    def __init__(self, backend: str, workdir: Path) -> None:
        self.backend = backend
        self._workdir = workdir
        self._count = itertools.count(1)
        self._pg_dir: Path | None = None
        self._pg: PostgresServer | None = None

    def __enter__(self) -> Stores:
        if self.backend == "postgresql":
            # Not under workdir: the server runs as the postgres user when we are root, and needs
            # every directory above its own to be open to it (tests/pgserver.py).
            self._pg_dir = Path(tempfile.mkdtemp(prefix="bench-postgres-"))
            self._pg = PostgresServer(self._pg_dir).start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._pg is not None:
            self._pg.stop()
        if self._pg_dir is not None:
            shutil.rmtree(self._pg_dir, ignore_errors=True)

    def new_url(self) -> str:
        number = next(self._count)
        if self._pg is None:
            return f"sqlite:///{self._workdir}/store-{self.backend}-{number:02d}.db"
        return self._pg.create_database(f"bench_{number}")

    def description(self) -> str:
        if self._pg is None:
            return "SQLite (a fresh file per server, on the bench's temporary directory)"
        with self._pg.connect() as conn:
            row = conn.execute("SHOW server_version").fetchone()
        version = row[0] if row else "?"
        return f"PostgreSQL {version} (throwaway server on loopback, fsync off)"
