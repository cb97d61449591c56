"""Webhook acknowledgement latency and drain time, against the real server on loopback.

Starts `alert-enricher serve` as a user would (fresh SQLite store, console output discarded,
Prometheus pointed at a closed port so context fails fast), then:
1. posts N distinct notifications one at a time and reports ack latency percentiles;
2. posts N more from C concurrent clients and reports throughput;
3. waits until the backlog is processed and reports how long that took.

Usage: python bench/webhook_ack.py [--count 300] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "alertmanager-0.25-firing_apidown_binance.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def payload(i: int) -> bytes:
    body = json.loads(FIXTURE.read_text())
    body["groupKey"] = f'{{}}:{{alertname="APIDown", exchange="bench-{i}"}}'
    body["alerts"][0]["fingerprint"] = f"bench{i:08d}"
    body["alerts"][0]["labels"]["exchange"] = f"bench-{i}"
    return json.dumps(body).encode()


def percentiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    q = statistics.quantiles(ms, n=100)
    return f"p50 {q[49]:.2f} ms  p95 {q[94]:.2f} ms  p99 {q[98]:.2f} ms  max {ms[-1]:.2f} ms"


async def wait_ready(client: httpx.AsyncClient) -> None:
    for _ in range(200):
        try:
            if (await client.get("/health")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.05)
    raise SystemExit("server did not start")


async def backlog(client: httpx.AsyncClient) -> int:
    return int((await client.get("/health")).json()["components"]["workers"]["backlog"])


async def run(count: int, concurrency: int, port: int) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        await wait_ready(client)
        sequential = []
        for i in range(count):
            body = payload(i)
            started = time.perf_counter()
            response = await client.post("/alerts", content=body)
            sequential.append(time.perf_counter() - started)
            assert response.status_code == 202, response.text
        print(f"sequential ack, {count} posts: {percentiles(sequential)}")

        queue = list(range(count, 2 * count))
        latencies: list[float] = []

        async def poster() -> None:
            while queue:
                body = payload(queue.pop())
                started = time.perf_counter()
                response = await client.post("/alerts", content=body)
                latencies.append(time.perf_counter() - started)
                assert response.status_code == 202, response.text

        started = time.perf_counter()
        await asyncio.gather(*(poster() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        print(
            f"concurrent ack, {count} posts from {concurrency} clients: "
            f"{count / elapsed:.0f} req/s; {percentiles(latencies)}"
        )

        started = time.perf_counter()
        while await backlog(client) > 0:
            await asyncio.sleep(0.05)
        print(
            f"drained {2 * count} notifications (rule-based, console) "
            f"{time.perf_counter() - started:.2f} s after the last ack"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "STORE_URL": f"sqlite:///{tmp}/bench.db",
            "PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",
            "LOG_LEVEL": "WARNING",
            "LLM_API_KEY": "",
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "app", "serve"],
            cwd=tmp,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        try:
            asyncio.run(run(args.count, args.concurrency, port))
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
