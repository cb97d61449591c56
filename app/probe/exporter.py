"""`alert-enricher probe`: probes the exchanges' public REST APIs and serves what it saw as
Prometheus metrics, the ones deploy/prometheus/rules/exchange-apis.yml alerts on.

One loop per endpoint, so one request in flight per endpoint. A 429 or 418 (Binance's IP ban)
stops every endpoint of that exchange until its `Retry-After` (else a doubling backoff): the
exchanges count the limit per IP, not per endpoint, and probing through a ban prolongs it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import BaseModel, Field, ValidationError

from app.logs import Throttled
from app.probe.exchanges import KNOWN, Endpoint, Exchange, error_code, server_time

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
MAX_BACKOFF_SECONDS = 600.0


class ExchangeConfig(BaseModel):
    base_url: str | None = None  # the exchange's own by default; a testnet, proxy or fake
    endpoints: list[str] | None = None  # every known endpoint by default


class ProbeConfig(BaseModel):
    interval_seconds: float = Field(15, ge=0.1)
    timeout_seconds: float = Field(5, gt=0)
    exchanges: dict[str, ExchangeConfig]

    def resolved(self) -> list[Exchange]:
        """The exchanges to probe, with their endpoints; ValueError for an unknown one."""
        chosen = []
        for name, wanted in self.exchanges.items():
            known = KNOWN.get(name)
            if known is None:
                raise ValueError(f"unknown exchange {name!r} (known: {', '.join(KNOWN)})")
            names = wanted.endpoints if wanted.endpoints is not None else list(known.endpoints)
            unknown = [e for e in names if e not in known.endpoints]
            if unknown:
                raise ValueError(
                    f"{name}: unknown endpoint(s) {', '.join(unknown)}"
                    f" (known: {', '.join(known.endpoints)})"
                )
            endpoints = {e: known.endpoints[e] for e in names}
            chosen.append(Exchange(name, wanted.base_url or known.base_url, endpoints))
        return chosen


def load_config(path: Path) -> ProbeConfig:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    try:
        config = ProbeConfig.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"{path}: {exc.errors(include_input=False)[0]['msg']}") from exc
    config.resolved()
    return config


class ProbeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.latency = Histogram(
            "api_request_latency_seconds",
            "Latency of probe requests to the exchange's REST API.",
            ["exchange", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.requests = Counter(
            "api_requests",
            "Probe requests by HTTP status (or timeout, unreachable) and the exchange's error code.",
            ["exchange", "endpoint", "status", "code"],
            registry=registry,
        )
        self.rate_limit_remaining = Gauge(
            "api_rate_limit_remaining",
            "Request weight (Binance) or requests (Bybit) left in the exchange's window.",
            ["exchange"],
            registry=registry,
        )
        self.rate_limit_limit = Gauge(
            "api_rate_limit_limit",
            "The exchange's limit for that window.",
            ["exchange"],
            registry=registry,
        )
        self.health = Gauge(
            "api_health_status",
            "1 when the latest probe of any endpoint of the exchange succeeded, else 0.",
            ["exchange"],
            registry=registry,
        )
        self.clock_skew = Gauge(
            "api_clock_skew_seconds",
            "Our clock minus the exchange's server time (half the round trip corrected).",
            ["exchange"],
            registry=registry,
        )


@dataclass
class ExchangeState:
    not_before: float = 0.0  # a 429 or 418 holds every endpoint until then
    backoff: float = 0.0
    ok: dict[str, bool] = field(default_factory=dict)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        value = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


class Prober:
    def __init__(
        self,
        config: ProbeConfig,
        http: httpx.AsyncClient,
        metrics: ProbeMetrics,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._exchanges = config.resolved()
        self._interval = config.interval_seconds
        self._timeout = config.timeout_seconds
        self._http = http
        self._metrics = metrics
        self._clock = clock
        self._state: Mapping[str, ExchangeState] = {
            e.name: ExchangeState() for e in self._exchanges
        }
        # An exchange out of reach fails every endpoint every interval: a line a minute is enough.
        self._unreachable = {e.name: Throttled(log, 60) for e in self._exchanges}

    async def run(self) -> None:
        """Probe every endpoint, each in a loop of its own, until cancelled."""
        async with asyncio.TaskGroup() as group:
            for exchange in self._exchanges:
                for endpoint in exchange.endpoints.values():
                    group.create_task(self._loop(exchange, endpoint))

    async def _loop(self, exchange: Exchange, endpoint: Endpoint) -> None:
        state = self._state[exchange.name]
        while True:
            held = state.not_before - self._clock()
            if held > 0:
                await asyncio.sleep(held)
                continue
            await self._probe(exchange, endpoint)
            await asyncio.sleep(self._interval)

    async def probe(self, exchange: str, endpoint: str) -> None:
        """Probe one endpoint once, by name (what each endpoint's loop does every interval)."""
        chosen = next(e for e in self._exchanges if e.name == exchange)
        await self._probe(chosen, chosen.endpoints[endpoint])

    async def _probe(self, exchange: Exchange, endpoint: Endpoint) -> None:
        """One request; its latency, status, error code, the weight left, the clock and health."""
        labels = {"exchange": exchange.name, "endpoint": endpoint.name}
        state = self._state[exchange.name]
        sent = self._clock()
        started = time.monotonic()
        try:
            response = await self._http.get(
                exchange.base_url + endpoint.path, timeout=self._timeout
            )
        except httpx.TimeoutException:
            self._failed(exchange, endpoint, "timeout")
            return
        except httpx.HTTPError as exc:
            self._unreachable[exchange.name].error(
                "%s unreachable (%s on %s)", exchange.name, type(exc).__name__, endpoint.name
            )
            self._failed(exchange, endpoint, "unreachable")
            return
        elapsed = time.monotonic() - started
        received = self._clock()
        self._metrics.latency.labels(**labels).observe(elapsed)
        body = _json(response)
        code = error_code(exchange.name, body)
        self._metrics.requests.labels(**labels, status=str(response.status_code), code=code).inc()
        limit = exchange.rate_limit(response.headers)
        if limit is not None:
            self._metrics.rate_limit_remaining.labels(exchange=exchange.name).set(limit.remaining)
            self._metrics.rate_limit_limit.labels(exchange=exchange.name).set(limit.limit)
        if response.status_code in (418, 429):
            state.backoff = min(MAX_BACKOFF_SECONDS, max(self._interval, state.backoff * 2))
            wait = _retry_after(response)
            state.not_before = received + (wait if wait is not None else state.backoff)
            log.warning(
                "%s answered %d (%s): probing it again in %.0fs",
                exchange.name,
                response.status_code,
                code or "no code",
                state.not_before - received,
            )
        else:
            state.backoff = 0.0
        ok = response.is_success and not code
        state.ok[endpoint.name] = ok
        self._health(exchange)
        if ok and endpoint.server_time:
            theirs = server_time(exchange.name, body)
            if theirs is not None:
                skew = (sent + received) / 2 - theirs
                self._metrics.clock_skew.labels(exchange=exchange.name).set(skew)

    def _failed(self, exchange: Exchange, endpoint: Endpoint, status: str) -> None:
        labels = {"exchange": exchange.name, "endpoint": endpoint.name}
        self._metrics.requests.labels(**labels, status=status, code="").inc()
        self._state[exchange.name].ok[endpoint.name] = False
        self._health(exchange)

    def _health(self, exchange: Exchange) -> None:
        up = any(self._state[exchange.name].ok.values())
        self._metrics.health.labels(exchange=exchange.name).set(1 if up else 0)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
