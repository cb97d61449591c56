"""Webhook acknowledgement latency and drain time, against the real server on loopback.

For each store backend (a fresh SQLite file; a fresh database on a throwaway PostgreSQL server from
tests/pgserver.py, when PostgreSQL's server programs are installed) it starts `alert-enricher serve`
as a user would (console output discarded, Prometheus pointed at a closed port so context fails
fast), then:
1. posts N distinct notifications one at a time and reports ack latency percentiles;
2. posts N more from C concurrent clients and reports throughput;
3. waits until the backlog is processed and reports how long that took;
and ends with one table row per backend.

Usage: python bench/webhook_ack.py [--count 300] [--concurrency 16] [--store sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests/pgserver.py: the throwaway PostgreSQL server
from tests.pgserver import PostgresServer  # noqa: E402

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


def quantiles_ms(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    q = statistics.quantiles(ms, n=100)
    return {"p50": q[49], "p95": q[94], "p99": q[98], "max": ms[-1]}


def percentiles(samples: list[float]) -> str:
    return "  ".join(f"{k} {v:.2f} ms" for k, v in quantiles_ms(samples).items())


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


async def run(count: int, concurrency: int, port: int) -> dict[str, float]:
    # TCP_NODELAY as Alertmanager's Go client has it: without it, the client's Nagle delay and the
    # server's delayed ACK add ~40 ms to each request on a kept-alive connection.
    transport = httpx.AsyncHTTPTransport(
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    )
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", timeout=10, transport=transport
    ) as client:
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
        drained = time.perf_counter() - started
        print(
            f"drained {2 * count} notifications (rule-based, console) "
            f"{drained:.2f} s after the last ack"
        )
        seq = quantiles_ms(sequential)
        return {"p50": seq["p50"], "p99": seq["p99"], "rps": count / elapsed, "drain": drained}


def serve(port: int, store_url: str, cwd: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "STORE_URL": store_url,
        "PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",
        "LOG_LEVEL": "WARNING",
        "LLM_API_KEY": "",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "app", "serve"], cwd=cwd, env=env, stdout=subprocess.DEVNULL
    )


def measure(store_url: str, cwd: str, count: int, concurrency: int) -> dict[str, float]:
    port = free_port()
    server = serve(port, store_url, cwd)
    try:
        return asyncio.run(run(count, concurrency, port))
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--store", choices=("sqlite", "postgresql"), action="append")
    args = parser.parse_args()
    stores = args.store or ["sqlite", *(["postgresql"] if PostgresServer.available() else [])]
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for store in stores:
            print(f"--- {store}")
            if store == "sqlite":
                rows[store] = measure(
                    f"sqlite:///{tmp}/bench.db", tmp, args.count, args.concurrency
                )
                continue
            directory = Path(tempfile.mkdtemp(prefix="bench-postgres-"))
            server = PostgresServer(directory).start()
            try:
                url = server.create_database("bench")
                rows[store] = measure(url, tmp, args.count, args.concurrency)
            finally:
                server.stop()
                shutil.rmtree(directory, ignore_errors=True)
    clients = f"req/s ({args.concurrency} clients)"
    print(f"\n{'store':<12}{'ack p50 (ms)':>14}{'ack p99 (ms)':>14}{clients:>22}{'drain (s)':>11}")
    for store, row in rows.items():
        print(
            f"{store:<12}{row['p50']:>14.2f}{row['p99']:>14.2f}{row['rps']:>22.0f}"
            f"{row['drain']:>11.2f}"
        )


if __name__ == "__main__":
    main()
