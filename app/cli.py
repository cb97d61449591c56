"""`alert-enricher serve | replay FILE.json [--send] [--chart OUT.png] | check | probe | list |
show ID | retry ID`."""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from pathlib import Path

from pydantic import ValidationError

from app.config import Settings
from app.logs import configure_logging
from app.prompts import PromptError, Prompts
from app.store.urls import check_store_url

# Each command imports what it runs when it runs: `serve` starts the webhook's process, which
# must not load the pipeline's libraries (chat clients, the PromQL parser: app/services.py).


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything starts, so a busy port fails in one line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP spelled out: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose proto
    # says TCP, and without that each answer on a kept-alive connection waits ~40 ms for an ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def serve(settings: Settings) -> int:
    import uvicorn  # noqa: PLC0415 - only `serve` needs the server

    from app.main import create_app  # noqa: PLC0415

    try:
        sock = listen(settings.host, settings.port)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        print(f"cannot listen on {settings.host}:{settings.port}: {reason}", file=sys.stderr)
        return 2
    config = uvicorn.Config(
        create_app(settings),
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=15,
    )
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="alert-enricher", description="Diagnose Alertmanager alerts and post them to chat."
    )
    commands = root.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the webhook service (what `make run` starts)")
    replay_cmd = commands.add_parser("replay", help="push one saved payload through the pipeline")
    replay_cmd.add_argument("file", type=Path, help="an Alertmanager webhook payload (JSON)")
    replay_cmd.add_argument("--send", action="store_true", help="deliver to configured channels")
    replay_cmd.add_argument(
        "--store",
        metavar="URL",
        help="keep the replay's state in this store (default: a temporary one)",
    )
    replay_cmd.add_argument(
        "--as",
        dest="channel",
        choices=("console", "slack", "telegram"),
        default="console",
        help="print what this channel would be sent (without --send)",
    )
    replay_cmd.add_argument(
        "--chart",
        type=Path,
        metavar="OUT.png",
        help="write the message's chart (needs Prometheus and the alert's series)",
    )
    commands.add_parser("check", help="validate configuration and try every dependency")
    probe_cmd = commands.add_parser(
        "probe", help="probe the exchanges' REST APIs and serve their metrics for Prometheus"
    )
    probe_cmd.add_argument(
        "--config", type=Path, required=True, help="e.g. deploy/probe.example.yml"
    )
    probe_cmd.add_argument(
        "--listen", default="127.0.0.1:9101", metavar="HOST:PORT", help="(127.0.0.1:9101)"
    )
    list_cmd = commands.add_parser("list", help="the store's latest notifications, newest first")
    list_cmd.add_argument("--failed", action="store_true", help="only those given up on")
    list_cmd.add_argument("--since", type=duration, metavar="AGE", help="e.g. 30m, 1h, 7d")
    list_cmd.add_argument("--limit", type=int, default=50, help="at most this many (50)")
    show_cmd = commands.add_parser(
        "show", help="one notification: payload, context, prompt, diagnosis, deliveries"
    )
    show_cmd.add_argument("id", type=int)
    retry_cmd = commands.add_parser(
        "retry", help="requeue a failed notification, for the channels that did not get it"
    )
    retry_cmd.add_argument("id", type=int)
    return root


def duration(text: str) -> float:
    from app.admin import parse_duration  # noqa: PLC0415

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def configuration_errors(exc: ValidationError) -> list[str]:
    """`NAME: what is wrong`, one per error; checks across settings name their setting first."""
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        where = ".".join(str(p) for p in error["loc"]).upper()
        lines.append(f"{where}: {message}" if where else message)
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        for line in configuration_errors(exc):
            print(f"invalid configuration: {line}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format, settings.secret_values())
    try:
        Prompts.load(settings.prompts_dir)  # a broken template: one line now, not a traceback later
    except PromptError as exc:
        print(f"invalid configuration: PROMPTS_DIR: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return serve(settings)
    if args.command == "replay":
        from app.replay import load_payload, replay  # noqa: PLC0415

        payload = load_payload(args.file)
        if payload is None:
            return 2
        if args.store:
            try:
                check_store_url(args.store)
            except ValueError as exc:
                print(f"invalid --store: {exc}", file=sys.stderr)
                return 2
            settings = settings.model_copy(update={"store_url": args.store})
        return asyncio.run(replay(settings, payload, args.send, args.channel, args.chart))
    if args.command == "probe":
        from app import probe  # noqa: PLC0415

        host, _, port = args.listen.rpartition(":")
        if not host or not port.isdigit():
            print(f"invalid --listen {args.listen!r}: HOST:PORT expected", file=sys.stderr)
            return 2
        try:
            return asyncio.run(probe.serve(args.config, host.strip("[]"), int(port)))
        except KeyboardInterrupt:
            return 0
    from app import admin  # noqa: PLC0415

    if args.command == "list":
        return asyncio.run(
            admin.with_store(
                settings,
                lambda store: admin.list_notifications(
                    store, args.since, args.failed, args.limit, sys.stdout
                ),
            )
        )
    if args.command == "show":
        return asyncio.run(
            admin.with_store(
                settings, lambda store: admin.show(store, settings, args.id, sys.stdout)
            )
        )
    if args.command == "retry":
        return asyncio.run(
            admin.with_store(settings, lambda store: admin.retry(store, args.id, sys.stdout))
        )
    from app.checks import check  # noqa: PLC0415

    return asyncio.run(check(settings))
