"""The deploy kit's stack on loopback: fake exchanges, `alert-enricher probe`, Prometheus with the
shipped rules, Alertmanager with the shipped routing, and the service.

Prometheus' and Alertmanager's configurations are the deploy kit's own files (deploy/), with only
what must differ on one machine rewritten: loopback targets, a temporary token file, and shorter
intervals and `for:` durations so that an outage pages within a minute instead of several.
"""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from demo.exchanges import FakeExchange, Outage, healthy
from demo.processes import ALERTMANAGER_BINARIES, Process, binary, free_port, wait_http

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
EXCHANGES = ("binance", "okx", "bybit")
DEMO_TOKEN_BYTES = 24

# Seconds, where the deploy kit has production values.
PROBE_INTERVAL = 2
SCRAPE_INTERVAL = "2s"
LONGEST_FOR = 10
GROUP_WAIT = "3s"
GROUP_INTERVAL = "10s"


def seconds(duration: str) -> float:
    """A Prometheus duration ("1m", "30s", "1h30m") in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    total, number = 0.0, ""
    rest = duration.strip()
    if not rest:
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    while rest:
        if rest[0].isdigit():
            number += rest[0]
            rest = rest[1:]
            continue
        unit = "ms" if rest.startswith("ms") else rest[0]
        if unit not in units or not number:
            raise ValueError(f"not a Prometheus duration: {duration!r}")
        total += int(number) * units[unit]
        number, rest = "", rest[len(unit) :]
    if number:
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    return total


def demo_rules(rule_file: Path, longest_for: float = LONGEST_FOR) -> dict[str, Any]:
    """A shipped rule file with every `for:` longer than `longest_for` cut to it."""
    rules: dict[str, Any] = yaml.safe_load(rule_file.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule and seconds(str(rule["for"])) > longest_for:
                rule["for"] = f"{longest_for:g}s"
    return rules


def prometheus_config(
    rules_dir: Path, targets: dict[str, str], alertmanager: str
) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with each job scraping `targets[job]` on loopback."""
    config: dict[str, Any] = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config["global"] = {
        "scrape_interval": SCRAPE_INTERVAL,
        "evaluation_interval": SCRAPE_INTERVAL,
    }
    config["rule_files"] = [str(rules_dir / "*.yml")]
    config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [alertmanager]}]}]
    for job in config["scrape_configs"]:
        name = job["job_name"]
        if name not in targets:
            raise ValueError(f"deploy/prometheus/prometheus.yml: no demo target for job {name!r}")
        job["static_configs"] = [{"targets": [targets[name]]}]
    return config


def alertmanager_config(service_url: str, token_file: Path) -> dict[str, Any]:
    """deploy/alertmanager/alertmanager.yml with every webhook posting to the one demo service."""
    config: dict[str, Any] = yaml.safe_load(
        (DEPLOY / "alertmanager" / "alertmanager.yml").read_text()
    )
    config["route"]["group_wait"] = GROUP_WAIT
    config["route"]["group_interval"] = GROUP_INTERVAL
    for receiver in config["receivers"]:
        webhook = dict(receiver["webhook_configs"][0])  # one replica here: one webhook each
        webhook["url"] = f"{service_url}/alerts"
        webhook["http_config"]["authorization"]["credentials_file"] = str(token_file)
        receiver["webhook_configs"] = [webhook]
    return config


def probe_config(exchanges: dict[str, FakeExchange]) -> dict[str, Any]:
    return {
        "interval_seconds": PROBE_INTERVAL,
        "timeout_seconds": 2,
        "exchanges": {name: {"base_url": fake.url} for name, fake in exchanges.items()},
    }


@dataclass
class DemoStack:
    """Everything `make demo` runs; `start()` inside a `with`, which stops it all on the way out."""

    tmp: Path
    outage: Outage
    failing: str = "bybit"
    service_env: dict[str, str] = field(default_factory=dict)
    service_port: int = field(default_factory=free_port)
    probe_port: int = field(default_factory=free_port)
    prometheus_port: int = field(default_factory=free_port)
    alertmanager_port: int = field(default_factory=free_port)
    exchanges: dict[str, FakeExchange] = field(default_factory=dict)
    processes: dict[str, Process] = field(default_factory=dict)
    _stack: ExitStack = field(default_factory=ExitStack)

    @property
    def service_url(self) -> str:
        return f"http://127.0.0.1:{self.service_port}"

    @property
    def probe_url(self) -> str:
        return f"http://127.0.0.1:{self.probe_port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def alertmanager_url(self) -> str:
        return f"http://127.0.0.1:{self.alertmanager_port}"

    def __enter__(self) -> DemoStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        prometheus = binary("prometheus")
        alertmanager = binary(*ALERTMANAGER_BINARIES)
        for name in EXCHANGES:
            fake = healthy(name, self.outage if name == self.failing else None)
            self.exchanges[name] = self._stack.enter_context(fake.serving())
        token = self._token_file()
        self._start_service(token)
        self._start_probe()
        self._start_alertmanager(alertmanager, token)
        self._start_prometheus(prometheus)

    def stop(self) -> None:
        """Stops each process (SIGTERM, then SIGKILL after 20 s) in reverse order, then the fakes."""
        for process in reversed(list(self.processes.values())):
            process.stop()
        self._stack.close()

    def _token_file(self) -> Path:
        path = self.tmp / "webhook_token"
        path.write_text(secrets.token_hex(DEMO_TOKEN_BYTES))
        path.chmod(0o600)
        return path

    def _start(self, process: Process, ready_url: str) -> None:
        process.die_with_parent = True
        self.processes[process.name] = process.start()
        wait_http(ready_url, timeout=120, process=process.proc)

    def _start_service(self, token: Path) -> None:
        env = {
            **self.service_env,
            "HOST": "127.0.0.1",
            "PORT": str(self.service_port),
            "STORE_URL": f"sqlite:///{self.tmp / 'enricher.db'}",
            "PROMETHEUS_URL": self.prometheus_url,
            "WEBHOOK_TOKEN": token.read_text(),
            "CONTEXT_WINDOW_MINUTES": self.service_env.get("CONTEXT_WINDOW_MINUTES", "5"),
        }
        service = Process(
            "service",
            [sys.executable, "-m", "app", "serve"],
            self.tmp / "service.log",
            env=env,
            cwd=ROOT,  # so a .env of the checkout (Slack, Telegram, an LLM key) applies
            pipe_stdout=True,
        )
        self._start(service, f"{self.service_url}/health")

    def _start_probe(self) -> None:
        config = self.tmp / "probe.yml"
        config.write_text(json.dumps(probe_config(self.exchanges)))  # JSON is YAML
        probe = Process(
            "probe",
            [
                sys.executable,
                "-m",
                "app",
                "probe",
                "--config",
                str(config),
                "--listen",
                f"127.0.0.1:{self.probe_port}",
            ],
            self.tmp / "probe.log",
            env={**self.service_env, "LOG_FORMAT": "text"},
            cwd=ROOT,
        )
        self._start(probe, f"{self.probe_url}/metrics")

    def _start_alertmanager(self, program: str, token: Path) -> None:
        config = self.tmp / "alertmanager.yml"
        config.write_text(json.dumps(alertmanager_config(self.service_url, token)))
        alertmanager = Process(
            "alertmanager",
            [
                program,
                f"--config.file={config}",
                f"--storage.path={self.tmp / 'alertmanager-data'}",
                f"--web.listen-address=127.0.0.1:{self.alertmanager_port}",
                f"--web.external-url={self.alertmanager_url}",
                "--cluster.listen-address=",  # one Alertmanager: no gossip port
                "--log.level=warn",
            ],
            self.tmp / "alertmanager.log",
        )
        self._start(alertmanager, f"{self.alertmanager_url}/-/ready")

    def _start_prometheus(self, program: str) -> None:
        rules_dir = self.tmp / "rules"
        rules_dir.mkdir()
        for rule_file in sorted((DEPLOY / "prometheus" / "rules").glob("*.yml")):
            (rules_dir / rule_file.name).write_text(json.dumps(demo_rules(rule_file)))
        targets = {
            "exchange-apis": f"127.0.0.1:{self.probe_port}",
            "alert-enricher": f"127.0.0.1:{self.service_port}",
            "alertmanager": f"127.0.0.1:{self.alertmanager_port}",
        }
        config = self.tmp / "prometheus.yml"
        config.write_text(
            json.dumps(prometheus_config(rules_dir, targets, f"127.0.0.1:{self.alertmanager_port}"))
        )
        prometheus = Process(
            "prometheus",
            [
                program,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.tmp / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{self.prometheus_port}",
                f"--web.external-url={self.prometheus_url}",
                "--log.level=warn",
            ],
            self.tmp / "prometheus.log",
        )
        self._start(prometheus, f"{self.prometheus_url}/-/ready")

    def exited(self) -> Iterator[Process]:
        """The processes that have ended (none should while the demo runs)."""
        return (
            p for p in self.processes.values() if p.proc is not None and p.proc.poll() is not None
        )
