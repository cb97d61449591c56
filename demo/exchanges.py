"""Loopback fakes of the exchanges' public REST APIs, answering as the real ones do: Binance's
`X-MBX-USED-WEIGHT-1M` and `{"code": -1003}` bodies, OKX's string codes, Bybit's `retCode` and
`X-Bapi-Limit-Status` headers, 429/418 with `Retry-After`.

A test scripts each path's answers; `make demo` serves `healthy(...)` exchanges, one of them with an
`Outage` on a schedule."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Answer:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def binance_time(skew: float = 0.0, used_weight: int = 20) -> Answer:
    """Binance's /api/v3/time, its clock `skew` seconds ahead of ours."""
    return Answer(
        body={"serverTime": int((time.time() + skew) * 1000)},
        headers={"X-MBX-USED-WEIGHT-1M": str(used_weight), "Content-Type": "application/json"},
    )


BINANCE_BANNED = Answer(
    418,
    {"code": -1003, "msg": "Way too many requests; IP(127.0.0.1) banned until 1700000000000."},
    {"Retry-After": "120", "X-MBX-USED-WEIGHT-1M": "6100"},
)
BINANCE_TOO_MANY = Answer(
    429,
    {
        "code": -1003,
        "msg": "Too many requests; current limit of IP(127.0.0.1) is 6000 requests per minute.",
    },
    {"Retry-After": "7", "X-MBX-USED-WEIGHT-1M": "6001"},
)
OKX_TOO_MANY = Answer(429, {"code": "50011", "msg": "Too Many Requests", "data": []})


def okx_time(skew: float = 0.0) -> Answer:
    return Answer(
        body={"code": "0", "msg": "", "data": [{"ts": str(int((time.time() + skew) * 1000))}]}
    )


def bybit_time(left: int = 590, limit: int = 600) -> Answer:
    now = time.time()
    return Answer(
        body={
            "retCode": 0,
            "retMsg": "OK",
            "result": {"timeSecond": str(int(now)), "timeNano": str(int(now * 1e9))},
            "time": int(now * 1000),
        },
        headers={"X-Bapi-Limit-Status": str(left), "X-Bapi-Limit": str(limit)},
    )


BYBIT_RATE_LIMITED = Answer(
    200,  # Bybit reports many errors in a 200 body
    {"retCode": 10006, "retMsg": "Too many visits!", "result": {}, "time": 1700000000000},
    {"X-Bapi-Limit-Status": "0", "X-Bapi-Limit": "600"},
)


Scripted = Answer | Callable[[], Answer]  # a callable answers with what is true at that moment


class FakeExchange:
    """Answers each path with its scripted answers in turn (the last one repeats)."""

    def __init__(self) -> None:
        self.answers: dict[str, list[Scripted]] = {}
        self.requests: list[tuple[float, str]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()
        self.url = ""

    def script(self, path: str, *answers: Scripted) -> None:
        self.answers[path] = list(answers)

    def _next(self, path: str) -> Answer:
        with self._lock:
            self.requests.append((time.monotonic(), path))
            queue = self.answers.get(path.split("?", maxsplit=1)[0]) or [
                Answer(404, {"msg": "not found"})
            ]
            scripted = queue.pop(0) if len(queue) > 1 else queue[0]
        return scripted() if callable(scripted) else scripted

    @contextmanager
    def serving(self) -> Iterator[FakeExchange]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with fake._lock:
                    fake.in_flight += 1
                    fake.most_in_flight = max(fake.most_in_flight, fake.in_flight)
                try:
                    answer = fake._next(self.path)
                    time.sleep(answer.delay)
                    body = answer.body
                    payload = (body if isinstance(body, str) else json.dumps(body)).encode()
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                finally:
                    with fake._lock:
                        fake.in_flight -= 1

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()


def binance_depth() -> Answer:
    return Answer(
        body={"lastUpdateId": 1, "bids": [["64000.00", "1.5"]], "asks": [["64000.10", "0.8"]]},
        headers={"X-MBX-USED-WEIGHT-1M": "25"},
    )


def okx_depth() -> Answer:
    book = {"asks": [["64000.1", "0.8", "0", "3"]], "bids": [["64000", "1.5", "0", "5"]]}
    return Answer(body={"code": "0", "msg": "", "data": [{**book, "ts": "1700000000000"}]})


def bybit_depth() -> Answer:
    book = {"s": "BTCUSDT", "a": [["64000.1", "0.8"]], "b": [["64000", "1.5"]], "ts": 1700000000000}
    return Answer(
        body={"retCode": 0, "retMsg": "OK", "result": book, "time": int(time.time() * 1000)},
        headers={"X-Bapi-Limit-Status": "598", "X-Bapi-Limit": "600"},
    )


HEALTHY: dict[str, dict[str, Callable[[], Answer]]] = {
    "binance": {
        "/api/v3/time": binance_time,
        "/api/v3/ping": lambda: Answer(body={}, headers={"X-MBX-USED-WEIGHT-1M": "21"}),
        "/api/v3/depth": binance_depth,
    },
    "okx": {"/api/v5/public/time": okx_time, "/api/v5/market/books": okx_depth},
    "bybit": {"/v5/market/time": bybit_time, "/v5/market/orderbook": bybit_depth},
}

# What an exchange's edge answers while the API is down: a gateway error with an HTML page.
OUTAGE_ANSWER = Answer(
    503, "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>"
)


@dataclass(frozen=True)
class Outage:
    """Down from `after` seconds past `started`, for `lasting` seconds, again every `every`."""

    started: float
    after: float
    lasting: float
    every: float

    def down(self, now: float) -> bool:
        elapsed = now - self.started - self.after
        return elapsed >= 0 and elapsed % self.every < self.lasting

    def next_change(self, now: float) -> tuple[str, float]:
        """("down" or "up", the monotonic time that comes next)."""
        elapsed = now - self.started - self.after
        if elapsed < 0:
            return "down", self.started + self.after
        cycle_start = now - elapsed % self.every
        if self.down(now):
            return "up", cycle_start + self.lasting
        return "down", cycle_start + self.every


def healthy(name: str, outage: Outage | None = None) -> FakeExchange:
    """An exchange answering every probed path as its real API does; 503 while `outage` says down."""
    exchange = FakeExchange()
    for path, answer in HEALTHY[name].items():

        def scripted(answer: Callable[[], Answer] = answer) -> Answer:
            if outage is not None and outage.down(time.monotonic()):
                return OUTAGE_ANSWER
            return answer()

        exchange.script(path, scripted)
    return exchange
