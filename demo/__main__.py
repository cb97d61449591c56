"""`make demo`: the monitoring stack on loopback; one fake exchange fails on a schedule, and the
service's messages (firing, then resolved, each diagnosed) print here. Ctrl-C stops everything.

    python -m demo [--failing bybit] [--outage-after 15] [--outage-seconds 40] [--every 150]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

from demo.exchanges import Outage
from demo.stack import EXCHANGES, DemoStack


def parser() -> argparse.ArgumentParser:
    args = argparse.ArgumentParser(prog="make demo", description=__doc__.split("\n\n")[0])
    args.add_argument("--failing", choices=EXCHANGES, default="bybit", help="the exchange to fail")
    args.add_argument(
        "--outage-after", type=float, default=15, help="seconds after start-up (default 15)"
    )
    args.add_argument(
        "--outage-seconds", type=float, default=40, help="how long it lasts (default 40)"
    )
    args.add_argument("--every", type=float, default=150, help="seconds between outages")
    args.add_argument("--keep", action="store_true", help="keep the logs and data afterwards")
    return args


def say(text: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {text}", flush=True)


def relay(stream: IO[bytes], out: IO[str]) -> None:
    """The service's standard output (its console messages) to ours, line by line."""
    for line in iter(stream.readline, b""):
        try:
            out.write(line.decode(errors="replace"))
            out.flush()
        except OSError:  # our reader went away: keep draining, or the service blocks on a full pipe
            continue


def announce(stack: DemoStack, outage: Outage, stopping: threading.Event) -> None:
    """Says when the failing exchange goes down and comes back, as it happens."""
    while not stopping.is_set():
        change, at = outage.next_change(time.monotonic())
        if stopping.wait(max(0.0, at - time.monotonic())):
            return
        if change == "down":
            say(
                f"{stack.failing} goes down now: 503 on every endpoint for"
                f" {outage.lasting:g}s. APIDown fires in about 20s."
            )
        else:
            say(f"{stack.failing} is back; the alert resolves in about 20s.")


def banner(stack: DemoStack, outage: Outage, tmp: Path) -> None:
    say("running. Ctrl-C stops it all.")
    lines = [
        f"  exchanges     fake {', '.join(EXCHANGES)} on loopback; {stack.failing} fails"
        f" {outage.after:g}s from now for {outage.lasting:g}s, every {outage.every:g}s",
        f"  probe         {stack.probe_url}/metrics   (alert-enricher probe)",
        f"  Prometheus    {stack.prometheus_url}/alerts   (deploy/prometheus/rules, 'for' cut to 10s)",
        f"  Alertmanager  {stack.alertmanager_url}   (deploy/alertmanager/alertmanager.yml)",
        f"  alert-enricher {stack.service_url}/metrics   (messages print below)",
        f"  logs          {tmp}",
    ]
    print("\n".join(lines), flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="alert-enricher-demo-"))
    # Ctrl-C stops it even when started from a shell's background job, which ignores SIGINT (Python
    # then leaves it ignored); SIGTERM (a supervisor, `kill`) stops it the same way.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    stopping = threading.Event()
    status = 0
    try:
        say("starting fake exchanges, the service, the probe, Alertmanager and Prometheus ...")
        outage = Outage(
            time.monotonic(), args.outage_after, args.outage_seconds, max(args.every, 1.0)
        )
        with DemoStack(tmp, outage, args.failing, service_env=dict(os.environ)) as stack:
            stack.start()
            service = stack.processes["service"].proc
            assert service is not None and service.stdout is not None
            threading.Thread(target=relay, args=(service.stdout, sys.stdout), daemon=True).start()
            threading.Thread(target=announce, args=(stack, outage, stopping), daemon=True).start()
            banner(stack, outage, tmp)
            while not (ended := list(stack.exited())):
                time.sleep(0.5)
            for process in ended:
                say(
                    f"{process.name} exited with {process.proc and process.proc.returncode};"
                    f" its log: {process.log}"
                )
            status = 1
    except KeyboardInterrupt:
        print(flush=True)
        say("stopping ...")
    except (RuntimeError, TimeoutError) as exc:
        say(f"could not start: {exc} (logs in {tmp})")
        status = 1
    finally:
        stopping.set()
    if args.keep or status:
        say(f"logs and data kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    say("stopped.")
    return status


if __name__ == "__main__":
    sys.exit(main())
