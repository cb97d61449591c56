"""Loopback fakes of the exchanges' public REST APIs, answering as the real ones do: Binance's
`X-MBX-USED-WEIGHT-1M` and `{"code": -1003}` bodies, OKX's string codes, Bybit's `retCode` and
`X-Bapi-Limit-Status` headers, 429/418 with `Retry-After`. A test scripts each path's answers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
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


class FakeExchange:
    """Answers each path with its scripted answers in turn (the last one repeats)."""

    def __init__(self) -> None:
        self.answers: dict[str, list[Answer]] = {}
        self.requests: list[tuple[float, str]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()
        self.url = ""

    def script(self, path: str, *answers: Answer) -> None:
        self.answers[path] = list(answers)

    def _next(self, path: str) -> Answer:
        with self._lock:
            self.requests.append((time.monotonic(), path))
            queue = self.answers.get(path.split("?", maxsplit=1)[0]) or [
                Answer(404, {"msg": "not found"})
            ]
            return queue.pop(0) if len(queue) > 1 else queue[0]

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
                    payload = json.dumps(answer.body).encode()
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
