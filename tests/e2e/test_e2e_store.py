"""The store's disk full or read-only: 503 so Alertmanager retries, and its retry lands later."""

import asyncio
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.capabilities import missing
from tests.e2e.conftest import eventually, quiet
from tests.e2e.test_e2e_faults import metric, outage

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 2 MiB tmpfs where the service keeps its store (needs root, as CI has)."""
    mount_point = tmp_path / "store"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        missing(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


async def health(svc) -> int:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"{svc.service_url}/health")).status_code


async def store_errors(svc) -> float:
    return await metric(svc, 'alert_enricher_webhooks_total{outcome="store_error"}')


async def wait_for_store_errors(svc) -> None:
    for _ in range(150):
        if await store_errors(svc) >= 1:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the service never answered 503")


async def test_disk_full_answers_503_and_alertmanagers_retry_lands_it(
    small_disk, stack, exporter, fakes
) -> None:
    exporter.set("binance")
    svc = await stack()
    filler = small_disk / "filler"
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={filler}", "bs=16k"], capture_output=True, check=False
    )

    exporter.set("binance", healthy=False)
    await wait_for_store_errors(svc)
    assert await health(svc) == 503
    assert not fakes.slack.messages

    filler.unlink()
    await outage(exporter, fakes, "binance")
    assert await health(svc) == 200
    await eventually(lambda: fakes.telegram.sent, what="Telegram")
    await quiet(svc)
    assert len(fakes.slack.messages) == 1 and len(fakes.telegram.sent) == 1


def remount(path: Path, mode: str) -> None:
    for _ in range(50):  # the stopped service's files may take a moment to close
        if (
            subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=False).returncode
            == 0
        ):
            return
        time.sleep(0.1)
    raise AssertionError(f"cannot remount {path} {mode}")


async def test_read_only_store_answers_503_and_recovers(small_disk, stack, exporter, fakes) -> None:
    exporter.set("binance")
    svc = await stack()
    await asyncio.to_thread(svc.processes["service"].stop)
    remount(small_disk, "ro")  # a filesystem can't go read-only under open files; restart onto it
    await asyncio.to_thread(svc.start_service, False)
    assert await health(svc) == 503

    exporter.set("binance", healthy=False)
    await wait_for_store_errors(svc)
    assert await health(svc) == 503

    remount(small_disk, "rw")
    await outage(exporter, fakes, "binance")
    await quiet(svc)
    assert len(fakes.slack.messages) == 1 and len(fakes.telegram.sent) == 1
