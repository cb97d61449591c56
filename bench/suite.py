"""The benchmark suite of issue 10 (`make bench`, or `python -m bench`): the real service on
loopback, once per store backend, with fakes for everything it talks to.

Per backend and per run, each measurement against a fresh `python -m app serve` and a fresh store
(a new SQLite file; a new database on a throwaway PostgreSQL server, when PostgreSQL's server
programs are installed):
  a. ack path: 10-alert notifications at a steady 200/s for 10 s (open loop: sends at fixed times,
     latency from each send's due time), then 2000 posts from 16 clients (closed loop, req/s),
     both also against a bare FastAPI app that only parses the body (bench/bare.py), in the same
     run; the service processes what it accepted meanwhile, with an instant LLM;
  b. pipeline overhead: 100 notifications one at a time, POST start to the first chat message;
  c. storm (bench/storms.py): 200 groups of 5 alerts from 16 clients, LLM answering in 1 s,
     LLM_CONCURRENCY=16 and WORKERS=32: time to page (a group's first message on Slack and
     Telegram, from its POST), then until every group's message on both shows the LLM's diagnosis
     (in the page, or by an edit of it); LLM calls, lost, edits;
  d. repeat: the same 200 groups again (still firing, past the dedup window): LLM calls, time;
  e. slow-LLM storm: 200 fresh groups, LLM answering in 20 s: time to page only (stopped once every
     group is paged);
  f. mixed storm: 180 warning groups, then 20 critical ones, LLM 1 s: the critical groups' time to
     page (and the warnings'), stopped once every group is paged;
  g. prompt tokens of the real prompts the service sends for 1 alert and a 100-alert group,
     counted with cl100k_base (bpe-openai, offline), else estimated as characters / 4;
  h. peak RSS (VmHWM) of the server after the storm: its process and its pipeline process, summed.
Then one table per backend: each figure's median and spread over the runs, against its target.

Fakes (bench/fakes.py) run in a process of their own. `--app-dir` runs the service from another
checkout (its `app/` and `prompts/`), to compare before and after; fakes, payloads and the bare
app stay this checkout's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from bench.fakes import Fakes
from bench.measure import (
    Bench,
    BenchError,
    Figures,
    TokenCounter,
    ack_phase,
    pipeline_phase,
)
from bench.payloads import ROOT
from bench.report import table
from bench.servers import Launcher, Stores, describe_checkout
from bench.storms import mixed_storm_phase, slow_storm_phase, storm_phase
from tests.pgserver import PostgresServer

Phase = Callable[[Bench, Stores], Awaitable[Figures]]
PHASES: list[tuple[str, Phase]] = [
    ("ack", ack_phase),
    ("pipeline", pipeline_phase),
    ("storm", storm_phase),
    ("slow-LLM storm", slow_storm_phase),
    ("mixed storm", mixed_storm_phase),
]


def token_counter() -> tuple[str, TokenCounter]:
    """cl100k_base tokens from bpe-openai (its data ships in the wheel), else chars / 4."""
    try:
        encoding = importlib.import_module("bpe_openai").get_encoding("cl100k_base")
    except Exception:  # not installed, or it failed: say so in the table
        return "ESTIMATE chars/4, bpe-openai not installed", lambda text: (len(text) + 3) // 4

    def count(text: str) -> int:
        return len(encoding.encode_ordinary(text))

    return "cl100k_base tokens", count


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    root.add_argument("--runs", type=int, help="runs per backend (default 3; 1 with --quick)")
    root.add_argument(
        "--store",
        choices=("sqlite", "postgresql"),
        action="append",
        help="a backend to measure (repeatable; default: both when PostgreSQL is installed)",
    )
    root.add_argument("--quick", action="store_true", help="a short smoke run: small counts, 1 run")
    root.add_argument(
        "--app-dir",
        type=Path,
        default=ROOT,
        help="the checkout whose service is measured (default: this one)",
    )
    root.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="keep the servers' logs and SQLite files in DIR (default: a temporary directory)",
    )
    root.add_argument("--rate", type=float, default=200.0, help="steady ack rate (payloads/s)")
    root.add_argument("--duration", type=float, help="seconds at the steady rate (default 10)")
    root.add_argument("--posts", type=int, help="closed-loop posts for throughput (default 2000)")
    root.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    root.add_argument("--samples", type=int, help="pipeline notifications (default 100)")
    root.add_argument("--groups", type=int, help="storm groups (default 200)")
    root.add_argument("--workers", type=int, default=32, help="the service's WORKERS (default 32)")
    root.add_argument(
        "--pipeline-process",
        choices=["auto", "true", "false"],
        default="auto",
        help="the service's PIPELINE_PROCESS (default auto: the pipeline in a process of its own)",
    )
    root.add_argument(
        "--phase",
        choices=[name for name, _ in PHASES],
        action="append",
        help="measure only this phase (repeatable; default: every phase)",
    )
    return root


def make_bench(args: argparse.Namespace, launcher: Launcher, fakes: Fakes) -> Bench:
    """The sizes: the defaults (issue 10's), --quick's, and whatever was given explicitly."""
    quick = args.quick
    _, count_tokens = token_counter()
    return Bench(
        launcher,
        fakes,
        count_tokens,
        rate=args.rate,
        clients=args.clients,
        duration=args.duration or (2.0 if quick else 10.0),
        posts=args.posts or (300 if quick else 2000),
        samples=args.samples or (20 if quick else 100),
        groups=args.groups or (32 if quick else 200),
        warmup=8 if quick else 20,
        workers=args.workers,
        pipeline_process=args.pipeline_process,
    )


async def run_backend(
    bench: Bench, backend: str, runs: int, workdir: Path, phases: list[str] | None = None
) -> tuple[str, list[Figures]]:
    """Every run on one backend; a measurement that fails is reported and left out."""
    results: list[Figures] = []
    with Stores(backend, workdir) as stores:
        description = stores.description()
        for number in range(1, runs + 1):
            bench.say(f"--- {backend}, run {number}/{runs}")
            figures: Figures = {}
            for name, phase in PHASES:
                if phases and name not in phases:
                    continue
                try:
                    figures |= await phase(bench, stores)
                except BenchError as exc:
                    bench.say(f"  {name}: not measured: {exc}")
            results.append(figures)
    return description, results


@contextlib.contextmanager
def scratch(keep: Path | None) -> Iterator[Path]:
    """A temporary directory for logs and stores; under `keep`, and kept, when it is given."""
    if keep is None:
        with tempfile.TemporaryDirectory(prefix="bench-") as temporary:
            yield Path(temporary)
        return
    keep.mkdir(parents=True, exist_ok=True)
    kept = Path(tempfile.mkdtemp(prefix="bench-", dir=keep))
    print(f"logs and stores kept in {kept}")
    yield kept


def header(bench: Bench, app_dir: Path) -> str:
    """What is measured, on what: the service's code, the machine's load, the settings."""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"service: {describe_checkout(app_dir)} ({bench.launcher.service_code()})\n"
        f"machine: {os.cpu_count()} cores, load average {load}; fakes in a process of their "
        f"own; LLM_CONCURRENCY={bench.llm_concurrency} WORKERS={bench.workers}"
        f" PIPELINE_PROCESS={bench.pipeline_process}"
    )


async def bench_all(args: argparse.Namespace, backends: list[str], runs: int) -> list[str]:
    """Every backend's runs with one fakes process; their tables."""
    app_dir = args.app_dir.resolve()
    unit = token_counter()[0]
    with scratch(args.keep) as workdir, (workdir / "fakes.log").open("w") as fakes_log:
        fakes = Fakes.start(fakes_log)
        try:
            async with fakes:
                bench = make_bench(args, Launcher(app_dir, workdir, fakes.env()), fakes)
                print(header(bench, app_dir))
                tables = []
                for backend in backends:
                    description, results = await run_backend(
                        bench, backend, runs, workdir, args.phase
                    )
                    tables.append(table(backend, description, bench, results, unit))
                return tables
        finally:
            fakes.stop()


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if not (args.app_dir / "app" / "__main__.py").exists():
        raise SystemExit(f"--app-dir {args.app_dir}: no app/__main__.py there")
    backends = args.store or ["sqlite", *(["postgresql"] if PostgresServer.available() else [])]
    if "postgresql" in backends and not PostgresServer.available():
        raise SystemExit(
            "--store postgresql: PostgreSQL's server programs are not installed "
            "(apt-get install postgresql, or make e2e-deps)"
        )
    runs = args.runs or (1 if args.quick else 3)
    started = time.monotonic()
    try:
        tables = asyncio.run(bench_all(args, backends, runs))
    except KeyboardInterrupt:
        sys.exit(130)
    print(
        f"\n{runs} run(s) per backend in {time.monotonic() - started:.0f} s; median and spread "
        "(min - max) over the runs; ✓/✗: the median against issue 10's (or 15's) target\n"
    )
    print("\n\n".join(tables))


if __name__ == "__main__":
    main()
