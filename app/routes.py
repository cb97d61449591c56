"""HTTP endpoints: thin. The webhook stores and answers; workers do the rest."""

from __future__ import annotations

import base64
import binascii
import contextlib
import ipaddress
import logging
import secrets
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ValidationError

from app.config import Settings
from app.models import AlertmanagerPayload
from app.priority import rank
from app.services import Services, services_of
from app.store import StoreError, backend_name

log = logging.getLogger(__name__)
router = APIRouter()


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its `$defs` inlined: local refs do not resolve in OpenAPI."""
    schema = model.model_json_schema(by_alias=True, mode="validation")
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


ALERTS_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": inline_schema(AlertmanagerPayload)}},
    },
}
ALERTS_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"description": "Stored durably; processed in the background"},
    200: {"description": "Duplicate of a notification already accepted"},
    400: {"description": "Body is not valid JSON"},
    401: {"description": "Missing or wrong credentials"},
    413: {"description": "Body larger than MAX_BODY_BYTES"},
    422: {"description": "JSON that is not an Alertmanager webhook payload"},
    503: {"description": "Could not be stored; Alertmanager will retry"},
}


PROTECTED_MODE_DETAIL = (
    "no webhook credentials are configured, so only clients on this machine (loopback) may post: "
    "set WEBHOOK_TOKEN and the same bearer token in Alertmanager's webhook http_config "
    "(or WEBHOOK_USERNAME/WEBHOOK_PASSWORD), or set ALLOW_UNAUTHENTICATED=true to accept anyone"
)


def basic_configured(settings: Settings) -> bool:
    return settings.webhook_username is not None and settings.webhook_password is not None


def credentials_configured(settings: Settings) -> bool:
    return settings.webhook_token is not None or basic_configured(settings)


def loopback(host: str | None) -> bool:
    """127.0.0.0/8, ::1 and IPv4-mapped loopback; anything unparsable (a Unix socket) is not."""
    try:
        address = ipaddress.ip_address(host or "")  # an IPv6 zone (::1%lo) parses too
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def protected_mode_refuses(request: Request, settings: Settings) -> bool:
    """Like Redis's protected mode: with no credentials, only loopback clients may post."""
    if credentials_configured(settings) or settings.allow_unauthenticated:
        return False
    return not loopback(request.client.host if request.client else None)


def _equal(given: str, expected: str) -> bool:
    return secrets.compare_digest(given.encode(), expected.encode())


def authorized(header: str | None, settings: Settings) -> bool:
    """Bearer token and/or basic auth, when configured; compared in constant time."""
    if not credentials_configured(settings):
        return True
    token = settings.webhook_token.get_secret_value() if settings.webhook_token else None
    password = settings.webhook_password.get_secret_value() if settings.webhook_password else None
    scheme, _, value = (header or "").strip().partition(" ")
    if token is not None and scheme.lower() == "bearer":
        return _equal(value.strip(), token)
    if password is not None and basic_configured(settings) and scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, given = decoded.partition(":")
        user_ok = _equal(user, settings.webhook_username or "")
        return bool(sep) and _equal(given, password) and user_ok
    return False


def _challenge(settings: Settings) -> str:
    """The schemes configured; Bearer, the one to set, when none is (protected mode)."""
    schemes = []
    if settings.webhook_token is not None or not credentials_configured(settings):
        schemes.append('Bearer realm="alert-enricher"')
    if basic_configured(settings):
        schemes.append('Basic realm="alert-enricher"')
    return ", ".join(schemes)


class BodyTooLargeError(Exception):
    pass


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, refusing as soon as it is known to be over `limit` (before any parsing)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError
        chunks.append(chunk)
    return b"".join(chunks)


def readable(exc: ValidationError) -> str:
    """Where and what, without echoing the (untrusted, possibly huge) input."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False)[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _reject(services: Services, outcome: str, status: int, detail: str, **headers: str) -> Response:
    services.metrics.webhooks.labels(outcome=outcome).inc()
    return JSONResponse({"status": "rejected", "detail": detail}, status, headers=headers or None)


@router.post("/alerts", status_code=202, openapi_extra=ALERTS_BODY, responses=ALERTS_RESPONSES)
async def receive_alerts(request: Request) -> Response:
    """Alertmanager webhook: validate, store durably, answer 202; the workers do the rest."""
    services = services_of(request.app)
    settings = services.settings
    started = time.perf_counter()
    if protected_mode_refuses(request, settings):
        challenge = {"WWW-Authenticate": _challenge(settings)}
        return _reject(services, "unauthorized", 401, PROTECTED_MODE_DETAIL, **challenge)
    if not authorized(request.headers.get("authorization"), settings):
        challenge = {"WWW-Authenticate": _challenge(settings)}
        return _reject(services, "unauthorized", 401, "missing or wrong credentials", **challenge)
    try:
        body = await read_limited(request, settings.max_body_bytes)
    except BodyTooLargeError:
        return _reject(
            services, "too_large", 413, f"body larger than {settings.max_body_bytes} bytes"
        )
    try:
        payload = AlertmanagerPayload.model_validate_json(body)
        text = body.decode("utf-8")
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            return _reject(services, "invalid", 400, f"body is not valid JSON: {readable(exc)}")
        return _reject(services, "invalid", 422, f"not an Alertmanager payload: {readable(exc)}")
    except UnicodeDecodeError:
        return _reject(services, "invalid", 400, "body is not UTF-8")
    if payload.version != "4":
        log.warning("payload version %r (expected 4): accepted, fields may differ", payload.version)
    try:
        accepted = await services.store.accept(
            payload.idempotency_key(),
            payload.group_id,
            text,
            settings.dedup_window_seconds,
            rank(payload),
        )
    except StoreError as exc:
        log.error("cannot store notification, answering 503 so Alertmanager retries: %s", exc)
        return _reject(services, "store_error", 503, "notification could not be stored")
    if accepted.duplicate:
        services.metrics.webhooks.labels(outcome="duplicate").inc()
        return JSONResponse({"status": "duplicate", "id": accepted.id}, 200)
    services.wake()
    services.metrics.webhooks.labels(outcome="accepted").inc()
    for alert in payload.alerts:
        services.metrics.alerts_received.labels(status=alert.status).inc()
    services.metrics.ack_seconds.observe(time.perf_counter() - started)
    log.info(
        "accepted notification %s: %s, %d alert(s)",
        accepted.id,
        payload.status,
        len(payload.alerts),
        extra={"notification_id": accepted.id, "group_key": payload.group_id, "stage": "accept"},
    )
    return JSONResponse({"status": "accepted", "id": accepted.id}, 202)


@router.get("/health")
async def health(request: Request) -> Response:
    """Overall status and each component; 503 only when the store is unusable."""
    services = services_of(request.app)
    backend = backend_name(services.settings.store_url)
    store: dict[str, Any] = {"status": "ok", "backend": backend}
    backlog = llm_backlog = None
    try:
        await services.store.ping()
        backlog = await services.store.backlog()
        llm_backlog = await services.store.llm_backlog()
    except StoreError as exc:
        store = {"status": "error", "backend": backend, "error": str(exc)}
    alive, size, _ = await services.pipeline_status()
    workers = {
        "status": "ok" if alive == size else "degraded",
        "alive": alive,
        "size": size,
        "backlog": backlog,
        "llm_backlog": llm_backlog,
    }
    if services.pipeline_process is not None:
        workers["process"] = services.pipeline_process.pid
    status = "ok"
    if workers["status"] != "ok":
        status = "degraded"
    if store["status"] != "ok":
        status = "unavailable"
    body = {
        "status": status,
        "components": {
            "store": store,
            "workers": workers,
            "llm": {"enabled": services.llm.enabled, "model": services.llm.model},
            "channels": services.channels(),
        },
    }
    return JSONResponse(body, 503 if status == "unavailable" else 200)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus text exposition of the service's own metrics."""
    services = services_of(request.app)
    with contextlib.suppress(StoreError):
        services.metrics.backlog.set(await services.store.backlog())
        services.metrics.queue_oldest_age.set(await services.store.oldest_backlog_age())
    _, _, pipeline = await services.pipeline_status()
    services.metrics.pipeline_up.set(pipeline is not None)
    text = services.metrics.exposition("webhook") + (pipeline or b"")
    return Response(text, media_type=CONTENT_TYPE_LATEST)
