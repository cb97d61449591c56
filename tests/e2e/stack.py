"""Real Prometheus, real Alertmanager and the service, each a process on a loopback port.

Every process writes its output to a log file under the test's temporary directory; `Stack.logs()`
reads them back (the secrets test scans them). With `replicas=N` the service runs N times, each
replica on a port of its own (`service`, `service-1`, ...; they must share a PostgreSQL STORE_URL),
and every Alertmanager sends each notification to every replica.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from demo.processes import ALERTMANAGER_BINARIES, Process, binary, free_port, wait_http

ROOT = Path(__file__).resolve().parents[2]
RULES = Path(__file__).with_name("rules.yml")
WEBHOOK_TOKEN = "fake-e2e-webhook-token"


@dataclass
class Stack:
    """One exporter target, Prometheus, N Alertmanagers and the service's replicas, on loopback."""

    tmp: Path
    exporter_port: int
    service_env: dict[str, str]
    alertmanagers: int = 1
    replicas: int = 1
    # settings of one replica only, on top of service_env: replica_env[i] for replica i
    replica_env: list[dict[str, str]] = field(default_factory=list)
    prometheus_port: int = field(default_factory=free_port)
    service_port: int = field(default_factory=free_port)  # replica 0's
    replica_ports: list[int] = field(default_factory=list)
    am_ports: list[int] = field(default_factory=list)
    processes: dict[str, Process] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.am_ports:  # known before anything starts: ALERTMANAGER_URL names the first
            self.am_ports = [free_port() for _ in range(self.alertmanagers)]
        if not self.replica_ports:
            others = [free_port() for _ in range(self.replicas - 1)]
            self.replica_ports = [self.service_port, *others]

    @property
    def service_url(self) -> str:
        return f"http://127.0.0.1:{self.service_port}"

    def replica_url(self, replica: int) -> str:
        return f"http://127.0.0.1:{self.replica_ports[replica]}"

    @property
    def replica_urls(self) -> list[str]:
        return [self.replica_url(i) for i in range(self.replicas)]

    @staticmethod
    def replica_name(replica: int) -> str:
        """The process (and log) name: `service` for the first replica, as with one."""
        return "service" if replica == 0 else f"service-{replica}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def alertmanager_url(self) -> str:
        return f"http://127.0.0.1:{self.am_ports[0]}"

    def start(self) -> Stack:
        self.start_services()
        for i, port in enumerate(self.am_ports):
            self._start_alertmanager(i, port)
        self._start_prometheus()
        return self

    def _start_prometheus(self) -> None:
        targets = [f"127.0.0.1:{p}" for p in self.am_ports]
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": targets}]}]},
            "scrape_configs": [
                {
                    "job_name": "crypto-api-monitor",
                    "static_configs": [{"targets": [f"127.0.0.1:{self.exporter_port}"]}],
                }
            ],
        }
        path = self.tmp / "prometheus.yml"
        path.write_text(json.dumps(config))  # JSON is YAML
        process = Process(
            "prometheus",
            [
                binary("prometheus"),
                f"--config.file={path}",
                f"--storage.tsdb.path={self.tmp / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{self.prometheus_port}",
                # generatorURL points here: a host the service must never contact
                "--web.external-url=http://prometheus.invalid:9090",
                "--rules.alert.resend-delay=1s",
                "--log.level=warn",
            ],
            self.tmp / "prometheus.log",
        ).start()
        self.processes["prometheus"] = process
        wait_http(f"{self.prometheus_url}/-/ready", process=process.proc)

    def wait_for_history(self, samples: int = 4, timeout: float = 30) -> None:
        """Block until Prometheus holds `samples` scrapes of every exchange.

        /-/ready comes before the first scrape: static targets reach the scraper through service
        discovery, which passes updates on at most every 5 seconds.
        """
        query = f"min(count_over_time(api_health_status[1m])) >= {samples}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = httpx.get(f"{self.prometheus_url}/api/v1/query", params={"query": query})
            if answer.json()["data"]["result"]:
                return
            time.sleep(0.25)
        raise TimeoutError(f"Prometheus has no {samples} samples after {timeout}s")

    def _start_alertmanager(self, index: int, port: int) -> None:
        config = {
            "route": {
                "receiver": "enricher",
                "group_by": ["alertname", "exchange"],
                "group_wait": "1s",
                "group_interval": "2s",
                "repeat_interval": "1h",
            },
            "receivers": [
                {
                    "name": "enricher",
                    "webhook_configs": [
                        {
                            "url": f"{url}/alerts",
                            "send_resolved": True,
                            "http_config": {
                                "authorization": {"type": "Bearer", "credentials": WEBHOOK_TOKEN}
                            },
                        }
                        for url in self.replica_urls
                    ],
                }
            ],
        }
        path = self.tmp / f"alertmanager-{index}.yml"
        path.write_text(json.dumps(config))
        process = Process(
            f"alertmanager-{index}",
            [
                binary(*ALERTMANAGER_BINARIES),
                f"--config.file={path}",
                f"--storage.path={self.tmp / f'alertmanager-{index}-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--web.external-url=http://127.0.0.1:{port}",
                "--cluster.listen-address=",  # no gossip: replicas do not dedup for us
                "--log.level=warn",
            ],
            self.tmp / f"alertmanager-{index}.log",
        ).start()
        self.processes[process.name] = process
        wait_http(f"http://127.0.0.1:{port}/-/ready", process=process.proc)

    def launch_service(self, replica: int = 0) -> Process:
        """`make run`, as a user starts it, with the test's settings in the environment."""
        env = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(self.replica_ports[replica]),
            "WEBHOOK_TOKEN": WEBHOOK_TOKEN,
            "STORE_URL": f"sqlite:///{self.tmp / 'store' / 'enricher.db'}",
            "PROMETHEUS_URL": self.prometheus_url,
            "ALERTMANAGER_URL": self.alertmanager_url,  # silences are made in the first
            "LOG_LEVEL": "INFO",
            **self.service_env,
            **(self.replica_env[replica] if replica < len(self.replica_env) else {}),
        }
        name = self.replica_name(replica)
        process = Process(
            name, ["make", "-s", "run"], self.tmp / f"{name}.log", env=env, cwd=ROOT
        ).start()
        self.processes[name] = process
        return process

    def wait_service(self, replica: int = 0, healthy: bool = True) -> None:
        process = self.processes[self.replica_name(replica)]
        statuses = (200,) if healthy else (200, 503)
        wait_http(f"{self.replica_url(replica)}/health", 120, process.proc, statuses)

    def start_service(self, healthy: bool = True, replica: int = 0) -> Process:
        process = self.launch_service(replica)
        self.wait_service(replica, healthy)
        return process

    def start_services(self, healthy: bool = True) -> None:
        """Every replica at once (they start side by side), then wait until each answers."""
        for replica in range(self.replicas):
            self.launch_service(replica)
        for replica in range(self.replicas):
            self.wait_service(replica, healthy)

    def restart_service(self, kill: bool = False, replica: int = 0) -> None:
        service = self.processes[self.replica_name(replica)]
        service.kill() if kill else service.stop()
        self.start_service(replica=replica)

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()

    def logs(self, name: str = "service") -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")
