import base64
import json
from collections.abc import Callable

import httpx
import pytest
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from app.config import Settings
from app.metrics import Metrics
from app.models import AlertmanagerPayload
from app.routes import (
    BodyTooLargeError,
    authorized,
    credentials_configured,
    inline_schema,
    loopback,
    read_limited,
    readable,
)
from tests.fakes import fixture_text

FIRING = fixture_text("alertmanager-0.25-firing_apidown_binance.json")
TOKEN = "fake-webhook-token"


async def test_payload_is_stored_before_202_and_a_repeat_is_a_duplicate(
    make_settings, running_app
) -> None:
    _, client = await running_app(make_settings())
    first = await client.post("/alerts", content=FIRING)
    assert first.status_code == 202
    assert first.json() == {"status": "accepted", "id": 1}
    second = await client.post("/alerts", content=FIRING)
    assert second.status_code == 200 and second.json()["status"] == "duplicate"


@pytest.mark.parametrize(
    ("header", "status"),
    [
        (None, 401),
        ("Bearer wrong-token", 401),
        (f"Basic {base64.b64encode(f'x:{TOKEN}'.encode()).decode()}", 401),
        (f"Bearer {TOKEN}", 202),
        (f"bearer {TOKEN}", 202),
    ],
)
async def test_bearer_token_is_required_when_configured(
    make_settings, running_app, header, status
) -> None:
    _, client = await running_app(make_settings(webhook_token=TOKEN))
    headers = {"Authorization": header} if header else {}
    response = await client.post("/alerts", content=FIRING, headers=headers)
    assert response.status_code == status
    if status == 401:
        assert response.headers["www-authenticate"] == 'Bearer realm="alert-enricher"'
        assert TOKEN not in response.text


@pytest.mark.parametrize(
    ("credentials", "status"),
    [("am:fake-pass", 202), ("am:nope", 401), ("other:fake-pass", 401), ("garbage-no-colon", 401)],
)
async def test_basic_auth_is_accepted_when_configured(
    make_settings, running_app, credentials, status
) -> None:
    _, client = await running_app(
        make_settings(webhook_username="am", webhook_password="fake-pass", webhook_token=TOKEN)
    )
    encoded = base64.b64encode(credentials.encode()).decode()
    response = await client.post(
        "/alerts", content=FIRING, headers={"Authorization": f"Basic {encoded}"}
    )
    assert response.status_code == status


async def test_oversized_body_is_refused_before_parsing(make_settings, running_app) -> None:
    _, client = await running_app(make_settings(max_body_bytes=2048))
    response = await client.post("/alerts", content=b"{" + b" " * 5000)
    assert response.status_code == 413


async def test_oversized_chunked_body_is_refused(make_settings, running_app) -> None:
    _, client = await running_app(make_settings(max_body_bytes=2048))

    async def chunks():
        for _ in range(10):
            yield b" " * 1000

    response = await client.post("/alerts", content=chunks())
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"not json", 400, "not valid JSON"),
        (b"[" * 100_000, 400, "not valid JSON"),
        (b'{"status": "firing"}', 422, "alerts"),
        (b'{"status": "exploded", "alerts": []}', 422, "status"),
        (
            json.dumps(
                {"status": "firing", "alerts": [{"status": "firing", "labels": {"a": 1}}]}
            ).encode(),
            422,
            "alerts.0.labels.a",
        ),
        (
            json.dumps(
                {"status": "firing", "alerts": [{"status": "firing", "labels": {}}]}
            ).encode(),
            422,
            "alerts.0.labels: Dictionary should have at least 1 item",
        ),
        (
            json.dumps({"status": "firing", "alerts": [{"status": "firing"}]}).encode(),
            422,
            "alerts.0.labels: Field required",
        ),
    ],
)
async def test_malformed_bodies_get_a_readable_reason(
    make_settings, running_app, body, status, reason
) -> None:
    _, client = await running_app(make_settings())
    response = await client.post("/alerts", content=body)
    assert response.status_code == status
    assert reason in response.json()["detail"]


async def test_store_failure_answers_503_so_alertmanager_retries(
    make_settings, running_app
) -> None:
    app, client = await running_app(make_settings())
    store = app.state.services.store
    await store._call(lambda: store._conn.execute("PRAGMA query_only=ON"))
    response = await client.post("/alerts", content=FIRING)
    assert response.status_code == 503
    health = await client.get("/health")
    assert health.status_code == 503 and health.json()["components"]["store"]["status"] == "error"


async def test_health_reports_each_component(make_settings, running_app) -> None:
    _, client = await running_app(make_settings(llm_api_key="fake-llm-key"))
    body = (await client.get("/health")).json()
    assert body["status"] == "ok"
    assert body["components"]["llm"] == {"enabled": True, "model": "deepseek-chat"}
    assert body["components"]["channels"] == {"slack": False, "telegram": False, "console": True}
    assert body["components"]["workers"]["alive"] == 2
    assert "fake-llm-key" not in json.dumps(body)


async def test_metrics_expose_webhook_outcomes(make_settings, running_app) -> None:
    _, client = await running_app(make_settings())
    await client.post("/alerts", content=FIRING)
    await client.post("/alerts", content=b"nope")
    text = (await client.get("/metrics")).text
    assert 'alert_enricher_webhooks_total{outcome="accepted"} 1.0' in text
    assert 'alert_enricher_webhooks_total{outcome="invalid"} 1.0' in text
    assert "alert_enricher_webhook_ack_seconds_bucket" in text


async def test_metrics_show_every_family_once_with_the_pipeline_up(
    make_settings, running_app
) -> None:
    _, client = await running_app(make_settings())
    text = (await client.get("/metrics")).text
    types = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert len(types) == len(set(types)), "no family twice"
    families = {family.name for family in Metrics().registry.collect()}
    assert families == {t.removesuffix("_total") for t in types if not t.endswith("_created")}
    assert "alert_enricher_pipeline_up 1.0" in text


def test_the_webhooks_and_the_pipelines_processes_each_show_their_own_families() -> None:
    metrics = Metrics()
    metrics.processed.labels(outcome="done").inc()
    metrics.webhooks.labels(outcome="accepted").inc()
    webhook = metrics.exposition("webhook").decode()
    pipeline = metrics.exposition("pipeline").decode()
    assert "alert_enricher_webhooks_total" in webhook and "webhooks_total" not in pipeline
    assert "notifications_processed_total" in pipeline and "processed_total" not in webhook
    assert sorted((webhook + pipeline).splitlines()) == sorted(
        metrics.exposition().decode().splitlines()
    )


async def test_openapi_describes_the_webhook_body(make_settings, running_app) -> None:
    _, client = await running_app(make_settings())
    spec = (await client.get("/openapi.json")).json()
    schema = spec["paths"]["/alerts"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]
    assert "alerts" in schema["required"]
    assert "$ref" not in json.dumps(schema), "every definition inlined"
    assert schema["properties"]["alerts"]["items"]["properties"]["labels"]["type"] == "object"


async def test_413_is_counted_so_dropped_pages_can_alert(make_settings, running_app) -> None:
    _, client = await running_app(make_settings(max_body_bytes=2048))
    await client.post("/alerts", content=b"{" + b" " * 5000)
    text = (await client.get("/metrics")).text
    assert 'alert_enricher_webhooks_total{outcome="too_large"} 1.0' in text


def client_from(app, host: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(host, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://svc")


@pytest.mark.parametrize("host", ["10.0.0.7", "192.0.2.1", "2001:db8::1", "::ffff:10.0.0.7"])
async def test_without_credentials_only_loopback_clients_may_post(
    make_settings, running_app, host
) -> None:
    app, _ = await running_app(make_settings())
    async with client_from(app, host) as remote:
        response = await remote.post("/alerts", content=FIRING)
    assert response.status_code == 401
    assert "WEBHOOK_TOKEN" in response.json()["detail"]
    assert response.headers["www-authenticate"] == 'Bearer realm="alert-enricher"'
    assert await app.state.services.store.backlog() == 0


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
async def test_loopback_clients_may_post_without_credentials(
    make_settings, running_app, host
) -> None:
    app, _ = await running_app(make_settings())
    async with client_from(app, host) as local:
        assert (await local.post("/alerts", content=FIRING)).status_code == 202


async def test_allow_unauthenticated_lifts_protected_mode(make_settings, running_app) -> None:
    app, _ = await running_app(make_settings(allow_unauthenticated=True))
    async with client_from(app, "10.0.0.7") as remote:
        assert (await remote.post("/alerts", content=FIRING)).status_code == 202


async def test_a_configured_token_admits_remote_clients(make_settings, running_app) -> None:
    app, _ = await running_app(make_settings(webhook_token=TOKEN))
    async with client_from(app, "10.0.0.7") as remote:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        assert (await remote.post("/alerts", content=FIRING, headers=headers)).status_code == 202
        assert (await remote.post("/alerts", content=FIRING)).status_code == 401


async def test_no_alertmanager_url_is_a_warning_at_start_not_an_error(
    make_settings, running_app, caplog
) -> None:
    _, client = await running_app(make_settings())
    assert (await client.get("/health")).status_code == 200
    assert "ALERTMANAGER_URL is not set" in caplog.text


def basic(credentials: str) -> str:
    return f"Basic {base64.b64encode(credentials.encode()).decode()}"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer    ",
        "Bearer fake-webhook",
        f"Bearer {TOKEN}-and-more",
        f"Bearer{TOKEN}",
        f"Token {TOKEN}",
        TOKEN,
        basic(f"am:{TOKEN}"),
    ],
    ids=repr,
)
def test_a_bearer_token_that_is_not_exactly_the_token_is_refused(
    make_settings: Callable[..., Settings], header: str | None
) -> None:
    assert not authorized(header, make_settings(webhook_token=TOKEN))


@pytest.mark.parametrize(
    "header", [f"Bearer {TOKEN}", f"BEARER {TOKEN}", f"  Bearer {TOKEN}  ", f"Bearer   {TOKEN}"]
)
def test_the_exact_bearer_token_is_accepted_whatever_the_schemes_case_and_spacing(
    make_settings: Callable[..., Settings], header: str
) -> None:
    assert authorized(header, make_settings(webhook_token=TOKEN))


def test_without_credentials_configured_every_header_is_authorized(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    assert authorized(None, settings) and authorized("Bearer anything", settings)


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (basic("am:fake-pass"), True),
        (basic("am:fake-pass").replace("Basic", "basic"), True),
        (basic("am:fake-pas"), False),
        (basic("am:fake-pass-more"), False),
        (basic("a:fake-pass"), False),
        (basic("amx:fake-pass"), False),
        (basic("am:"), False),
        (basic(":fake-pass"), False),
        (basic("amfake-pass"), False),
        ("Basic not*base64", False),
        # strict base64: a lenient decoder drops the "!" and reads "am:fake-pass"
        (basic("am:fake-pass")[:-1] + "!" + basic("am:fake-pass")[-1], False),
        ("Basic " + base64.b64encode(b"am:\xff\xfe").decode(), False),
        ("Basic ", False),
        ("Bearer fake-pass", False),
    ],
    ids=repr,
)
def test_basic_auth_needs_both_the_exact_user_and_password(
    make_settings: Callable[..., Settings], header: str, ok: bool
) -> None:
    settings = make_settings(webhook_username="am", webhook_password="fake-pass")
    assert authorized(header, settings) is ok


def test_a_password_may_hold_a_colon(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(webhook_username="am", webhook_password="fake:pass")
    assert authorized(basic("am:fake:pass"), settings)
    assert not authorized(basic("am:fake"), settings)


def test_with_a_token_and_basic_auth_either_is_accepted(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(webhook_token=TOKEN, webhook_username="am", webhook_password="pw")
    assert authorized(f"Bearer {TOKEN}", settings)
    assert authorized(basic("am:pw"), settings)
    assert not authorized("Bearer pw", settings)
    assert not authorized(basic(f"am:{TOKEN}"), settings)


def test_a_username_without_a_password_is_not_basic_auth(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(webhook_token=TOKEN, webhook_username="am")
    assert not authorized(basic("am:"), settings)
    assert not authorized(basic("am:None"), settings)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.255.255.254", True),
        ("::1", True),
        ("::1%lo", True),
        ("::ffff:127.0.0.1", True),
        ("128.0.0.1", False),
        ("10.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("fe80::1%eth0", False),
        ("localhost", False),
        ("", False),
        (None, False),
    ],
)
def test_only_loopback_addresses_count_as_this_machine(host: str | None, expected: bool) -> None:
    assert loopback(host) is expected


async def test_a_refusal_names_every_configured_scheme(make_settings, running_app) -> None:
    _, client = await running_app(
        make_settings(webhook_token=TOKEN, webhook_username="am", webhook_password="pw")
    )
    response = await client.post("/alerts", content=FIRING)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        'Bearer realm="alert-enricher", Basic realm="alert-enricher"'
    )
    assert response.json() == {"status": "rejected", "detail": "missing or wrong credentials"}


async def test_a_refusal_with_only_basic_auth_asks_for_basic(make_settings, running_app) -> None:
    app, _ = await running_app(make_settings(webhook_username="am", webhook_password="pw"))
    async with client_from(app, "10.0.0.7") as remote:
        refused = await remote.post("/alerts", content=FIRING)
        accepted = await remote.post(
            "/alerts", content=FIRING, headers={"Authorization": basic("am:pw")}
        )
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == 'Basic realm="alert-enricher"'
    assert accepted.status_code == 202


async def test_a_body_of_exactly_the_limit_is_read(make_settings, running_app) -> None:
    _, client = await running_app(make_settings(max_body_bytes=2048))
    body = FIRING.encode()
    assert len(body) < 2048
    padded = body + b" " * (2048 - len(body))
    assert (await client.post("/alerts", content=padded)).status_code == 202

    exact_chunked = padded.replace(b"binance", b"kraken!")
    assert len(exact_chunked) == 2048

    async def other_chunks():
        yield exact_chunked[:1000]
        yield exact_chunked[1000:]

    assert (await client.post("/alerts", content=other_chunks())).status_code == 202
    too_large = await client.post("/alerts", content=padded + b" ")
    assert too_large.status_code == 413
    assert too_large.json()["detail"] == "body larger than 2048 bytes"


async def test_a_chunked_body_one_byte_over_the_limit_is_refused(
    make_settings, running_app
) -> None:
    _, client = await running_app(make_settings(max_body_bytes=2048))

    async def chunks():
        yield b" " * 2048
        yield b" "

    assert (await client.post("/alerts", content=chunks())).status_code == 413


async def test_a_validation_reason_names_five_errors_and_counts_the_rest(
    make_settings, running_app
) -> None:
    _, client = await running_app(make_settings())
    alerts = [{"status": "firing", "labels": {}} for _ in range(7)]
    response = await client.post("/alerts", json={"status": "firing", "alerts": alerts})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith("not an Alertmanager payload: alerts.0.labels: ")
    assert detail.count("alerts.") == 5 and detail.endswith(" (and 2 more)")
    assert detail.count("; alerts.") == 4, "one reason after another"
    assert "alerts.4.labels" in detail and "alerts.5.labels" not in detail


async def test_a_single_validation_error_has_no_count_of_more(make_settings, running_app) -> None:
    _, client = await running_app(make_settings())
    response = await client.post(
        "/alerts", json={"alerts": [{"status": "firing", "labels": {"a": "b"}}]}
    )
    assert response.json()["detail"] == "not an Alertmanager payload: status: Field required"


async def test_a_body_that_is_not_an_object_is_blamed_on_the_body(
    make_settings, running_app
) -> None:
    _, client = await running_app(make_settings())
    response = await client.post("/alerts", content=b"[]")
    assert response.status_code == 422
    assert response.json()["detail"].startswith("not an Alertmanager payload: body: ")


async def test_accepted_alerts_are_counted_by_status_and_duplicates_apart(
    make_settings, running_app
) -> None:
    _, client = await running_app(make_settings())
    mixed = fixture_text("alertmanager-0.25-mixed_apidown_one_resolved.json")
    payload = json.loads(mixed)
    firing = sum(a["status"] == "firing" for a in payload["alerts"])
    resolved = sum(a["status"] == "resolved" for a in payload["alerts"])
    assert firing and resolved
    assert (await client.post("/alerts", content=mixed)).status_code == 202
    assert (await client.post("/alerts", content=mixed)).status_code == 200
    text = (await client.get("/metrics")).text
    assert f'alert_enricher_alerts_received_total{{status="firing"}} {float(firing)}' in text
    assert f'alert_enricher_alerts_received_total{{status="resolved"}} {float(resolved)}' in text
    assert 'alert_enricher_webhooks_total{outcome="duplicate"} 1.0' in text
    assert 'alert_enricher_webhooks_total{outcome="accepted"} 1.0' in text
    assert "alert_enricher_webhook_ack_seconds_count 1.0" in text


async def test_refusals_are_counted_by_outcome(make_settings, running_app) -> None:
    _, client = await running_app(make_settings(webhook_token=TOKEN))
    await client.post("/alerts", content=FIRING)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    await client.post("/alerts", content=b'{"status": "firing"}', headers=auth)
    text = (await client.get("/metrics")).text
    assert 'alert_enricher_webhooks_total{outcome="unauthorized"} 1.0' in text
    assert 'alert_enricher_webhooks_total{outcome="invalid"} 1.0' in text
    assert 'alert_enricher_webhooks_total{outcome="accepted"}' not in text


async def test_another_payload_version_is_accepted(make_settings, running_app) -> None:
    _, client = await running_app(make_settings())
    other = json.loads(FIRING) | {"version": "5"}
    assert (await client.post("/alerts", json=other)).status_code == 202


async def test_health_is_degraded_with_workers_down_and_reports_the_backlog(
    make_settings, running_app
) -> None:
    app, client = await running_app(make_settings())
    await app.state.services.workers.stop()
    assert (await client.post("/alerts", content=FIRING)).status_code == 202
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["components"]["workers"] == {
        "status": "degraded",
        "alive": 0,
        "size": 2,
        "backlog": 1,
        "llm_backlog": 0,
    }
    assert body["components"]["store"] == {"status": "ok", "backend": "sqlite"}
    assert body["components"]["llm"]["enabled"] is False
    assert "alert_enricher_backlog 1.0" in (await client.get("/metrics")).text


async def test_healthy_service_reports_ok_workers_and_an_empty_backlog(
    make_settings, running_app
) -> None:
    _, client = await running_app(make_settings())
    body = (await client.get("/health")).json()
    assert body["status"] == "ok"
    assert body["components"]["workers"] == {
        "status": "ok",
        "alive": 2,
        "size": 2,
        "backlog": 0,
        "llm_backlog": 0,
    }


async def test_metrics_are_served_in_prometheus_text_format(make_settings, running_app) -> None:
    _, client = await running_app(make_settings())
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain;")
    assert "alert_enricher_backlog 0.0" in response.text


def test_the_inlined_schema_resolves_nested_definitions_in_lists() -> None:
    schema = inline_schema(AlertmanagerPayload)
    assert "$defs" not in schema and "$ref" not in json.dumps(schema)
    alert = schema["properties"]["alerts"]["items"]
    assert alert["required"] == ["status", "labels"]
    assert set(alert["properties"]) >= {"startsAt", "endsAt", "generatorURL", "fingerprint"}
    assert schema["properties"]["status"]["enum"] == ["firing", "resolved"]


def test_a_model_without_nested_models_has_its_schema_as_is() -> None:
    class Flat(BaseModel):
        name: str

    assert inline_schema(Flat) == Flat.model_json_schema()


def test_a_username_alone_configures_no_credentials(make_settings: Callable[..., Settings]) -> None:
    assert not credentials_configured(make_settings(webhook_username="am"))
    assert credentials_configured(make_settings(webhook_username="am", webhook_password="pw"))


async def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read() -> None:
    async def receive() -> dict[str, object]:
        raise AssertionError("the body was read")

    headers = [(b"content-length", b"2049")]
    request = Request({"type": "http", "method": "POST", "headers": headers}, receive)
    with pytest.raises(BodyTooLargeError):
        await read_limited(request, 2048)


def test_six_validation_errors_name_five_and_count_one_more() -> None:
    alerts = [{"status": "firing", "labels": {}} for _ in range(6)]
    with pytest.raises(ValidationError) as caught:
        AlertmanagerPayload.model_validate({"status": "firing", "alerts": alerts})
    reason = readable(caught.value)
    assert reason.count("; alerts.") == 4 and reason.endswith(", not 0 (and 1 more)")
