"""The exchange-API probe exporter (`alert-enricher probe`): exchanges.py knows the APIs,
exporter.py probes them and serves the metrics."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry, start_http_server

from app.probe.exporter import ProbeMetrics, Prober, load_config

log = logging.getLogger(__name__)


async def serve(config_path: Path, host: str, port: int) -> int:
    """Probe until interrupted, serving /metrics on host:port; 2 on a bad config or port."""
    try:
        config = load_config(config_path)
    except ValueError as exc:
        print(f"invalid probe configuration: {exc}", file=sys.stderr)
        return 2
    registry = CollectorRegistry()
    metrics = ProbeMetrics(registry)
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        print(f"cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    names = ", ".join(config.exchanges)
    log.info(
        "probing %s every %gs; metrics on http://%s:%d/metrics",
        names,
        config.interval_seconds,
        host,
        port,
    )
    headers = {"User-Agent": "alert-enricher-probe"}
    async with httpx.AsyncClient(headers=headers, follow_redirects=False) as http:
        await Prober(config, http, metrics).run()
    return 0
