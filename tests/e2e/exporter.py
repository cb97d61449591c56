"""A small exporter that mimics the exchange-API metrics, with values a test can flip.

Serves `api_health_status`, `api_rate_limit_remaining`, the `api_request_latency_seconds` histogram
and `api_requests_total` for each exchange it was told about. Counters grow on every scrape so
`rate()` sees traffic; the histogram's observations sit at the configured latency.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
REQUESTS_PER_SCRAPE = 100


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@dataclass
class Exchange:
    healthy: bool = True
    rate_limit_remaining: float = 1200
    latency: float = 0.04
    error_ratio: float = 0.0
    requests_ok: int = 0
    requests_failed: int = 0
    latency_counts: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    latency_count: int = 0
    latency_sum: float = 0.0

    def tick(self) -> None:
        failed = round(REQUESTS_PER_SCRAPE * self.error_ratio)
        self.requests_failed += failed
        self.requests_ok += REQUESTS_PER_SCRAPE - failed
        for i, bound in enumerate(BUCKETS):
            if self.latency <= bound:
                self.latency_counts[i] += REQUESTS_PER_SCRAPE
        self.latency_count += REQUESTS_PER_SCRAPE
        self.latency_sum += self.latency * REQUESTS_PER_SCRAPE


class Exporter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.exchanges: dict[str, Exchange] = {}
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> Exporter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def set(self, exchange: str, **values: float | bool) -> None:
        with self._lock:
            state = self.exchanges.setdefault(exchange, Exchange())
            for name, value in values.items():
                setattr(state, name, value)

    def render(self) -> str:
        lines = [
            "# TYPE api_health_status gauge",
            "# TYPE api_rate_limit_remaining gauge",
            "# TYPE api_request_latency_seconds histogram",
            "# TYPE api_requests_total counter",
        ]
        with self._lock:
            for name, ex in self.exchanges.items():
                ex.tick()
                label = f'exchange="{_escape(name)}"'
                lines.append(f"api_health_status{{{label}}} {int(ex.healthy)}")
                lines.append(f"api_rate_limit_remaining{{{label}}} {ex.rate_limit_remaining}")
                for bound, count in zip(BUCKETS, ex.latency_counts, strict=True):
                    lines.append(
                        f'api_request_latency_seconds_bucket{{{label},le="{bound}"}} {count}'
                    )
                lines.append(
                    f'api_request_latency_seconds_bucket{{{label},le="+Inf"}} {ex.latency_count}'
                )
                lines.append(f"api_request_latency_seconds_sum{{{label}}} {ex.latency_sum}")
                lines.append(f"api_request_latency_seconds_count{{{label}}} {ex.latency_count}")
                lines.append(f'api_requests_total{{{label},code="200"}} {ex.requests_ok}')
                lines.append(f'api_requests_total{{{label},code="429"}} {ex.requests_failed}')
        return "\n".join(lines) + "\n"
