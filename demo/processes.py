"""Processes on loopback ports, for `make demo` and the end-to-end tests: each in its own process
group (so a Ctrl-C reaches only the demo, which stops them in order), its output in a log file."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

ALERTMANAGER_BINARIES = ("prometheus-alertmanager", "alertmanager")  # Debian's name, upstream's


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(f"none of {names} is installed: run `make e2e-deps`, which installs them")


def wait_http(
    url: str,
    timeout: float = 30,
    process: subprocess.Popen[bytes] | None = None,
    statuses: tuple[int, ...] = (200,),
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code in statuses:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout}s")


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _terminate_with_parent() -> None:
    """In the child, before exec: SIGTERM when the process that started it dies, even by SIGKILL."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Process:
    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    pipe_stdout: bool = False  # stdout to `proc.stdout` for the caller; the log has stderr
    # Linux: ends when its starter does, however that dies (`make demo` killed leaves no orphans).
    die_with_parent: bool = False

    def start(self) -> Process:
        handle = self.log.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE if self.pipe_stdout else handle,
            stderr=handle if self.pipe_stdout else subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,  # its own process group: `make` and what it starts
            preexec_fn=self._preexec(),  # noqa: PLW1509 (no threads touch it before exec)
        )
        handle.close()
        return self

    def _preexec(self) -> Callable[[], None] | None:
        return _terminate_with_parent if self.die_with_parent and sys.platform == "linux" else None

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 20) -> None:
        if self.proc is None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait(5)

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown handlers run."""
        if self.proc is not None:
            self.signal(signal.SIGKILL)
            self.proc.wait(10)
