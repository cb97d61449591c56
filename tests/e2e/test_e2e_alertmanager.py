"""The silence client against a real Alertmanager: hostile label text stays literal, a repeated or
concurrent create makes one silence, and expiring works (twice, too)."""

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from app.alertmanager import AlertmanagerClient, AlertmanagerError, exact_matchers
from demo.processes import ALERTMANAGER_BINARIES, Process, binary, free_port, wait_http

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

HOSTILE = {
    "alertname": "APIDown",
    "exchange": 'bin"ance',
    "job": 'x", alertname=~".*',
    "instance": ".*",
    "note": 'line one\nline two =~ {a="b"} \\n',
}


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    """A bare Alertmanager on a free loopback port: one receiver that sends nowhere, no cluster."""
    config = tmp_path / "alertmanager.yml"
    config.write_text(json.dumps({"route": {"receiver": "null"}, "receivers": [{"name": "null"}]}))
    port = free_port()
    process = Process(
        "alertmanager",
        [
            binary(*ALERTMANAGER_BINARIES),
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
        tmp_path / "alertmanager.log",
    ).start()
    try:
        wait_http(f"http://127.0.0.1:{port}/-/ready", process=process.proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


async def listed(http: httpx.AsyncClient, base: str) -> list[dict]:
    answer = await http.get(f"{base}/api/v2/silences")
    answer.raise_for_status()
    return answer.json()


async def silenced_by(http: httpx.AsyncClient, base: str, labels: dict[str, str]) -> list[str]:
    """Post an alert with `labels` and read back which silences mute it."""
    alert = {"labels": labels, "startsAt": datetime.now(UTC).isoformat()}
    (await http.post(f"{base}/api/v2/alerts", json=[alert])).raise_for_status()
    for alert in (await http.get(f"{base}/api/v2/alerts")).json():
        if alert["labels"] == labels:
            return alert["status"]["silencedBy"]
    raise AssertionError(f"alert {labels} not found")


async def test_silence_from_hostile_labels_is_literal_single_and_expires(alertmanager: str) -> None:
    ends_at = datetime.now(UTC) + timedelta(hours=1)
    async with httpx.AsyncClient(timeout=5) as http:
        am = AlertmanagerClient(http, alertmanager)
        silence = await am.create_silence(exact_matchers(HOSTILE), ends_at, "alice", "from Slack")
        assert silence.created

        [stored] = await listed(http, alertmanager)
        assert stored["id"] == silence.id
        assert stored["status"]["state"] == "active"
        assert stored["createdBy"] == "alice"
        assert sorted(stored["matchers"], key=lambda m: m["name"]) == [
            {"name": name, "value": value, "isRegex": False, "isEqual": True}
            for name, value in sorted(HOSTILE.items())
        ]
        stored_end = datetime.fromisoformat(stored["endsAt"])
        assert stored_end.replace(microsecond=0) == ends_at.replace(microsecond=0)

        # the values are literal: this alert only, not every alert a regex `.*` would take
        assert await silenced_by(http, alertmanager, HOSTILE) == [silence.id]
        other = {**HOSTILE, "instance": "10.0.0.1:9100"}
        assert await silenced_by(http, alertmanager, other) == []

        again = await am.create_silence(
            exact_matchers(HOSTILE), ends_at + timedelta(seconds=2), "alice", "retry"
        )
        together = await asyncio.gather(
            *(am.create_silence(exact_matchers(HOSTILE), ends_at, "alice", "tap") for _ in range(3))
        )
        assert {again.id, *(s.id for s in together)} == {silence.id}
        assert not again.created
        assert not any(s.created for s in together)
        assert len(await listed(http, alertmanager)) == 1

        await am.expire_silence(silence.id)
        assert (await am.get_silence(silence.id)).state == "expired"
        [stored] = await listed(http, alertmanager)
        assert stored["status"]["state"] == "expired"
        await am.expire_silence(silence.id)  # a second tap on "unsilence" is no error

        # an expired silence is history, not the one to reuse
        fresh = await am.create_silence(exact_matchers(HOSTILE), ends_at, "alice", "again")
        assert fresh.created
        assert fresh.id != silence.id
        assert len(await listed(http, alertmanager)) == 2


async def test_unknown_silence_is_not_found_and_bad_matchers_are_refused(
    alertmanager: str,
) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        am = AlertmanagerClient(http, alertmanager)
        unknown = "00000000-0000-4000-8000-000000000000"
        with pytest.raises(AlertmanagerError) as caught:
            await am.expire_silence(unknown)
        assert caught.value.not_found
        with pytest.raises(AlertmanagerError) as caught:
            await am.get_silence(unknown)
        assert caught.value.not_found
        ends_at = datetime.now(UTC) + timedelta(hours=1)
        with pytest.raises(AlertmanagerError, match="HTTP 400 creating a silence: silence invalid"):
            await am.create_silence(exact_matchers({"instance": ""}), ends_at, "alice", "c")
        assert await listed(http, alertmanager) == []
