"""What the probe knows of each exchange's public REST API: its endpoints, how it reports the request
weight left, its error bodies, and its server time. Pure functions of a response; no I/O.

- Binance: `X-MBX-USED-WEIGHT-1M` is the weight used in the current minute (limit 6,000 per IP on
  api.binance.com); errors are `{"code": -1003, "msg": ...}`; 429 then 418 (IP ban) with
  `Retry-After`. Server time: `GET /api/v3/time` -> `{"serverTime": ms}`.
- OKX: public endpoints send no weight headers (20 requests per 2 s per IP); errors are
  `{"code": "50011", "msg": ...}`, with `code` "0" on success. Server time:
  `GET /api/v5/public/time` -> `{"data": [{"ts": "ms"}]}`.
- Bybit: `X-Bapi-Limit-Status` (requests left) and `X-Bapi-Limit` (the limit); errors are
  `{"retCode": 10006, "retMsg": ...}`, `retCode` 0 on success. Server time:
  `GET /v5/market/time` -> `{"time": ms}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

BINANCE_WEIGHT_LIMIT = 6000


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str
    server_time: bool = False  # the body carries the exchange's clock


@dataclass(frozen=True)
class RateLimit:
    remaining: float
    limit: float


@dataclass(frozen=True)
class Exchange:
    name: str
    base_url: str
    endpoints: Mapping[str, Endpoint]

    def rate_limit(self, headers: httpx.Headers) -> RateLimit | None:
        return RATE_LIMITS[self.name](headers) if self.name in RATE_LIMITS else None


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def binance_rate_limit(headers: httpx.Headers) -> RateLimit | None:
    used = _number(headers.get("x-mbx-used-weight-1m"))
    if used is None:
        return None
    return RateLimit(max(0.0, BINANCE_WEIGHT_LIMIT - used), BINANCE_WEIGHT_LIMIT)


def bybit_rate_limit(headers: httpx.Headers) -> RateLimit | None:
    remaining = _number(headers.get("x-bapi-limit-status"))
    limit = _number(headers.get("x-bapi-limit"))
    if remaining is None or limit is None or limit <= 0:
        return None
    return RateLimit(remaining, limit)


RATE_LIMITS = {"binance": binance_rate_limit, "bybit": bybit_rate_limit}


def error_code(exchange: str, body: Any) -> str:
    """The exchange's own error code in a reply body ("" when it reports success or none)."""
    if not isinstance(body, dict):
        return ""
    if exchange == "binance":
        code = body.get("code")
        return str(code) if isinstance(code, int) and code < 0 else ""
    if exchange == "okx":
        code = body.get("code")
        return str(code) if isinstance(code, str) and code not in ("", "0") else ""
    if exchange == "bybit":
        code = body.get("retCode")
        return str(code) if isinstance(code, int) and code != 0 else ""
    return ""


def server_time(exchange: str, body: Any) -> float | None:
    """The exchange's clock in Unix seconds, from its server-time endpoint's body."""
    try:
        if exchange == "binance":
            return float(body["serverTime"]) / 1000
        if exchange == "okx":
            return float(body["data"][0]["ts"]) / 1000
        if exchange == "bybit":
            return float(body["time"]) / 1000
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return None


KNOWN: Mapping[str, Exchange] = {
    "binance": Exchange(
        "binance",
        "https://api.binance.com",
        {
            "time": Endpoint("time", "/api/v3/time", server_time=True),
            "ping": Endpoint("ping", "/api/v3/ping"),
            "depth": Endpoint("depth", "/api/v3/depth?symbol=BTCUSDT&limit=5"),
        },
    ),
    "okx": Exchange(
        "okx",
        "https://www.okx.com",
        {
            "time": Endpoint("time", "/api/v5/public/time", server_time=True),
            "depth": Endpoint("depth", "/api/v5/market/books?instId=BTC-USDT&sz=5"),
        },
    ),
    "bybit": Exchange(
        "bybit",
        "https://api.bybit.com",
        {
            "time": Endpoint("time", "/v5/market/time", server_time=True),
            "depth": Endpoint("depth", "/v5/market/orderbook?category=spot&symbol=BTCUSDT&limit=5"),
        },
    ),
}
