import base64

import httpx
import pytest
import respx

from app.cli import main
from tests.fakes import FIXTURES, LLM_URL, PROMETHEUS_URL, matrix


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no stray .env, store under tmp
    monkeypatch.setenv("STORE_URL", f"sqlite:///{tmp_path}/cli.db")
    monkeypatch.setenv("PROMETHEUS_URL", PROMETHEUS_URL)
    monkeypatch.setenv("LLM_BASE_URL", LLM_URL)
    for name in ("LLM_API_KEY", "HOLYSHEEP_API_KEY", "SLACK_BOT_TOKEN", "TELEGRAM_BOT_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_replay_prints_the_rendered_message(env, respx_mock, capsys) -> None:
    labels = {"exchange": "okx", "instance": "127.0.0.1:19100", "job": "crypto-api-monitor"}
    respx_mock.post(f"{PROMETHEUS_URL}/api/v1/query_range").mock(
        return_value=matrix((labels, [900, 400, 35, 2]))
    )
    code = main(["replay", str(FIXTURES / "alertmanager-0.25-firing_ratelimitexhausted_okx.json")])
    out = capsys.readouterr().out
    assert code == 0
    assert "FIRING: RateLimitExhausted on okx" in out
    assert "request-weight budget for okx" in out
    assert "now 2   min 2   max 900" in out


def test_replay_of_a_missing_file_says_so(env, capsys) -> None:
    assert main(["replay", "nope.json"]) == 2
    assert "cannot read nope.json" in capsys.readouterr().err


def test_replay_send_delivers_to_the_console_channel(env, capsys) -> None:
    code = main(
        ["replay", "--send", str(FIXTURES / "alertmanager-0.25-resolved_apidown_binance.json")]
    )
    out = capsys.readouterr().out
    assert code == 0 and "RESOLVED: APIDown" in out and "sent to console" in out


def test_check_reports_each_dependency_and_fails_when_one_is_down(env, respx_mock, capsys) -> None:
    respx_mock.get(f"{PROMETHEUS_URL}/api/v1/status/buildinfo").mock(
        return_value=httpx.Response(200, json={"status": "success", "data": {"version": "2.42.0"}})
    )
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert "store      OK" in out and "Prometheus 2.42.0" in out
    assert "llm        SKIPPED" in out

    env.setenv("LLM_API_KEY", "fake-bad-key")
    respx_mock.get(f"{LLM_URL}/models").mock(return_value=httpx.Response(401))
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert "llm        FAIL  invalid LLM API key (401)" in out
    assert "fake-bad-key" not in out


def test_check_fails_when_prometheus_is_unreachable(
    env, respx_mock: respx.MockRouter, capsys
) -> None:
    respx_mock.get(f"{PROMETHEUS_URL}/api/v1/status/buildinfo").mock(
        side_effect=httpx.ConnectError("x")
    )
    assert main(["check"]) == 1
    assert "prometheus FAIL" in capsys.readouterr().out


def test_invalid_configuration_is_reported_without_values(env, capsys) -> None:
    env.setenv("PORT", "not-a-port")
    assert main(["check"]) == 2
    assert "PORT" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("channel", "needle"), [("slack", '"attachments"'), ("telegram", "<b>🔥 FIRING")]
)
def test_replay_previews_a_channels_rendering(env, respx_mock, capsys, channel, needle) -> None:
    respx_mock.post(f"{PROMETHEUS_URL}/api/v1/query_range").mock(return_value=matrix())
    path = str(FIXTURES / "alertmanager-0.25-firing_apidown_binance.json")
    assert main(["replay", path, "--as", channel]) == 0
    assert needle in capsys.readouterr().out


def test_check_reaches_prometheus_with_basic_auth_and_tenant_headers(
    env, respx_mock, capsys
) -> None:
    env.setenv("PROMETHEUS_USERNAME", "grafana")
    env.setenv("PROMETHEUS_PASSWORD", "fake-prom-password")
    env.setenv("PROMETHEUS_HEADERS", "X-Scope-OrgID=tenant-1,X-Extra=yes")
    route = respx_mock.get(f"{PROMETHEUS_URL}/api/v1/status/buildinfo").mock(
        return_value=httpx.Response(200, json={"status": "success", "data": {"version": "2.42.0"}})
    )
    assert main(["check"]) == 0
    request = route.calls[0].request
    expected = base64.b64encode(b"grafana:fake-prom-password").decode()
    assert request.headers["authorization"] == f"Basic {expected}"
    assert request.headers["x-scope-orgid"] == "tenant-1" and request.headers["x-extra"] == "yes"
    out = capsys.readouterr().out
    assert "basic auth as grafana; headers X-Extra, X-Scope-OrgID" in out
    assert "fake-prom-password" not in out and "tenant-1" not in out


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("PROMETHEUS_HEADERS", "X-Scope-OrgID", "has no value"),
        ("PROMETHEUS_HEADERS", "Bad Header=1", "not a valid header name"),
        ("PROMETHEUS_HEADERS", '{"X-A": 1}', "string values"),
        ("PROMETHEUS_CA_FILE", "/nonexistent/ca.pem", "cannot load a CA bundle"),
    ],
)
def test_bad_prometheus_access_settings_stop_at_start(env, capsys, name, value, reason) -> None:
    env.setenv(name, value)
    assert main(["check"]) == 2
    err = capsys.readouterr().err
    assert f"invalid configuration: {name}" in err and reason in err
