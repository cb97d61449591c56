"""Protected mode, tried from another host: a network namespace joined to this one by a veth pair.

Every 127.x address is loopback, so a real non-loopback client needs an interface of its own. The
namespace and its addresses exist only inside this test's sandbox and are removed afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest

from tests.capabilities import missing
from tests.fakes import fixture_text

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

FIRING = fixture_text("alertmanager-0.25-firing_apidown_binance.json")
# What the client in the namespace runs: one POST, printing the status and the body.
CLIENT = """
import sys, urllib.request, urllib.error
request = urllib.request.Request(sys.argv[1], data=sys.stdin.buffer.read(), method="POST",
                                 headers={"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(request, timeout=10) as answer:
        print(answer.status); print(answer.read().decode())
except urllib.error.HTTPError as error:
    print(error.code); print(error.read().decode())
"""


@dataclass(frozen=True)
class RemoteHost:
    namespace: str
    address: str  # the client's own address
    gateway: str  # this host's address as the client sees it

    def post(self, url: str, body: str) -> tuple[int, str]:
        done = subprocess.run(
            ["ip", "netns", "exec", self.namespace, sys.executable, "-c", CLIENT, url],
            input=body.encode(),
            capture_output=True,
            timeout=30,
            check=True,
        )
        status, _, text = done.stdout.decode().partition("\n")
        return int(status), text


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@contextmanager
def remote_host() -> Iterator[RemoteHost]:
    name = f"ae-remote-{os.getpid()}"
    outer, inner = f"aeh{os.getpid() % 100000}", f"aep{os.getpid() % 100000}"
    host = RemoteHost(namespace=name, address="10.203.113.2", gateway="10.203.113.1")
    try:
        _ip("netns", "add", name)
    except (OSError, subprocess.CalledProcessError) as exc:
        missing(f"cannot create a network namespace (needs root and iproute2): {exc}")
    try:
        _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", name)
        _ip("addr", "add", f"{host.gateway}/30", "dev", outer)
        _ip("link", "set", outer, "up")
        _ip("-n", name, "addr", "add", f"{host.address}/30", "dev", inner)
        _ip("-n", name, "link", "set", inner, "up")
        _ip("-n", name, "link", "set", "lo", "up")
        yield host
    finally:
        subprocess.run(["ip", "link", "del", outer], check=False, capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True, timeout=10)


async def test_without_credentials_a_remote_client_is_refused_with_the_way_out(stack) -> None:
    svc = await stack(service_only=True, HOST="0.0.0.0", WEBHOOK_TOKEN="")
    with remote_host() as remote:
        url = f"http://{remote.gateway}:{svc.service_port}/alerts"
        status, text = remote.post(url, FIRING)
        assert status == 401, text
        detail = json.loads(text)["detail"]
        assert "WEBHOOK_TOKEN" in detail and "ALLOW_UNAUTHENTICATED=true" in detail
    async with httpx.AsyncClient(timeout=10) as local:
        accepted = await local.post(f"{svc.service_url}/alerts", content=FIRING)
        assert accepted.status_code == 202, "loopback clients still may post"
        metrics = (await local.get(f"{svc.service_url}/metrics")).text
    assert 'alert_enricher_webhooks_total{outcome="unauthorized"} 1.0' in metrics
    assert "protected mode" in svc.logs()


async def test_allow_unauthenticated_accepts_the_remote_client(stack) -> None:
    svc = await stack(
        service_only=True,
        HOST="0.0.0.0",
        WEBHOOK_TOKEN="",
        ALLOW_UNAUTHENTICATED="true",
    )
    with remote_host() as remote:
        status, text = remote.post(f"http://{remote.gateway}:{svc.service_port}/alerts", FIRING)
    assert status == 202, text
    assert "ALLOW_UNAUTHENTICATED=true" in svc.logs()
