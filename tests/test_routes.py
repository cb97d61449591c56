import base64
import json

import httpx
import pytest

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
    store = app.state.runtime.store
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
    assert await app.state.runtime.store.backlog() == 0


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
