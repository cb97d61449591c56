"""`alert-enricher check`: try each configured dependency, one line each (store, Prometheus, the
LLM, Alertmanager's silences, each chat channel); a non-zero exit when any fails."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from app.config import Settings
from app.prometheus import PrometheusError
from app.prompts import PromptError
from app.runbooks import Runbooks
from app.runtime import Runtime, build_runtime
from app.store import StoreError, shown_url

Probe = Callable[[], Awaitable[str]]


def silence_probes(
    settings: Settings, runtime: Runtime
) -> list[tuple[str, Probe | tuple[str, str]]]:
    """The `silences` line: ALERTMANAGER_URL reachable, and which chats have silence buttons (or why none)."""
    wanted = [
        name
        for name, value in (
            ("SLACK_SIGNING_SECRET", settings.slack_signing_secret),
            ("TELEGRAM_ALLOWED_USER_IDS", settings.telegram_allowed_user_ids),
        )
        if value
    ]
    silencer = runtime.silencer
    if silencer is None:
        if not wanted:
            return []
        why = f"{' and '.join(wanted)} set, but no ALERTMANAGER_URL: no silence buttons"
        return [("silences", ("SKIPPED", why))]
    buttons = []
    if runtime.slack_actions is not None:
        buttons.append("Slack (POST /slack/actions)")
    if runtime.telegram_poller is not None:
        buttons.append(f"Telegram ({len(settings.telegram_allowed_ids)} users may tap)")
    if not buttons:
        buttons.append(
            "none (SLACK_SIGNING_SECRET with Slack's bot mode, or TELEGRAM_ALLOWED_USER_IDS)"
        )

    async def alertmanager() -> str:
        held = await silencer.ping()
        return f"{settings.alertmanager_url}: {held} silences; buttons: {', '.join(buttons)}"

    return [("silences", alertmanager)]


async def check(settings: Settings) -> int:
    """Try each configured dependency; one line each; non-zero exit when any fails."""
    try:
        runtime = await build_runtime(settings)
    except (StoreError, PromptError) as exc:
        print(row("startup", "FAIL", str(exc)))
        return 1

    async def store() -> str:
        await runtime.store.ping()
        return f"{shown_url(settings.store_url)} (backlog {await runtime.store.backlog()})"

    async def prometheus() -> str:
        try:
            version = await runtime.prometheus.ready()
        except PrometheusError as exc:
            if "prometheus_url" in settings.model_fields_set:
                raise
            raise AdvisoryError(
                f"{exc}: the default PROMETHEUS_URL; set PROMETHEUS_URL=http://your-prometheus:9090"
                " (until then messages say 'metrics unavailable')"
            ) from exc
        extras = [f"Prometheus {version}"]
        if settings.prometheus_username:
            extras.append(f"basic auth as {settings.prometheus_username}")
        if settings.prometheus_token:
            extras.append("bearer token")
        if headers := settings.prometheus_header_map:
            extras.append(f"headers {', '.join(sorted(headers))}")
        if settings.prometheus_ca_file:
            extras.append(f"CA {settings.prometheus_ca_file}")
        if not settings.prometheus_tls_verify:
            extras.append("TLS not verified")
        return f"{settings.prometheus_url} ({'; '.join(extras)})"

    endpoint = f"model {settings.llm_model} at {settings.llm_base_url}"

    async def llm() -> str:
        return f"{endpoint}: {await runtime.llm.ping()}"

    skipped_llm = (
        f"no LLM_API_KEY: rule-based diagnosis (with a key, alert data goes to {endpoint})"
    )
    probes: list[tuple[str, Probe | tuple[str, str]]] = [
        ("store", store),
        ("prometheus", prometheus),
        ("llm", llm if runtime.llm.enabled else ("SKIPPED", skipped_llm)),
    ]
    if settings.runbooks_dir is not None:
        probes.append(("runbooks", ("OK", runbook_summary(settings.runbooks_dir))))
    probes += silence_probes(settings, runtime)
    for notifier in runtime.dispatcher.notifiers:
        ping = getattr(notifier, "ping", None)
        probes.append((notifier.name, ping if ping else ("OK", "prints to standard output")))
    failed = 0
    try:
        for name, probe in probes:
            if isinstance(probe, tuple):
                print(row(name, *probe))
                continue
            try:
                print(row(name, "OK", await asyncio.wait_for(probe(), timeout=15)))
            except AdvisoryError as warning:
                print(row(name, "WARN", str(warning)))
            except Exception as exc:  # a probe failing is the answer, whatever it raised
                failed += 1
                print(row(name, "FAIL", str(exc) or type(exc).__name__))
    finally:
        await runtime.close()
    return 1 if failed else 0


def runbook_summary(directory: Path) -> str:
    books = Runbooks.load(directory)
    alerts = sorted({name for book in books.books for name in book.alertnames})
    covered = (
        f"; alerts {', '.join(alerts[:10])}{' ...' if len(alerts) > 10 else ''}" if alerts else ""
    )
    return f"{len(books)} in {directory}{covered}"


class AdvisoryError(Exception):
    """Worth saying, not a failure: `check` still exits 0."""


def row(name: str, status: str, detail: str) -> str:
    return f"{name:<12}{status:<9}{detail}"
