import asyncio
import base64
import socket

import httpx
import pytest
import respx

from app.cli import listen, main
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
    assert "store       OK       sqlite:///" in out and "Prometheus 2.42.0" in out
    assert "llm         SKIPPED  no LLM_API_KEY" in out
    assert f"alert data goes to model deepseek-chat at {LLM_URL}" in out

    env.setenv("LLM_API_KEY", "fake-bad-key")
    respx_mock.get(f"{LLM_URL}/models").mock(return_value=httpx.Response(401))
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert "llm         FAIL     model deepseek-chat at" not in out
    assert "llm         FAIL     invalid LLM API key (401)" in out
    assert "fake-bad-key" not in out


def test_check_fails_when_prometheus_is_unreachable(
    env, respx_mock: respx.MockRouter, capsys
) -> None:
    respx_mock.get(f"{PROMETHEUS_URL}/api/v1/status/buildinfo").mock(
        side_effect=httpx.ConnectError("x")
    )
    assert main(["check"]) == 1, "a configured Prometheus that is down is a failure"
    assert "prometheus  FAIL     " in capsys.readouterr().out


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


def test_replay_writes_the_messages_chart_from_prometheus_series(
    env, respx_mock, capsys, tmp_path
) -> None:
    labels = {"exchange": "binance", "instance": "127.0.0.1:19100", "job": "crypto-api-monitor"}
    respx_mock.post(f"{PROMETHEUS_URL}/api/v1/query_range").mock(
        return_value=matrix((labels, [1, 1, 1, 0, 0, 0]))
    )
    path = str(FIXTURES / "alertmanager-0.25-firing_apidown_binance.json")
    out = tmp_path / "out.png"
    assert main(["replay", path, "--chart", str(out)]) == 0
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    err = capsys.readouterr().err
    assert f"chart written to {out} ({out.stat().st_size:,} bytes): APIDown on binance" in err


def test_replay_says_why_there_is_no_chart(env, respx_mock, capsys, tmp_path) -> None:
    respx_mock.post(f"{PROMETHEUS_URL}/api/v1/query_range").mock(return_value=matrix())
    path = str(FIXTURES / "alertmanager-0.25-firing_apidown_binance.json")
    out = tmp_path / "out.png"
    assert main(["replay", path, "--chart", str(out)]) == 1
    assert "no chart: query returned no series" in capsys.readouterr().err
    assert not out.exists()


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


def test_check_passes_with_nothing_configured_and_warns_about_the_default_prometheus(
    env, respx_mock, capsys
) -> None:
    env.delenv("PROMETHEUS_URL")
    respx_mock.get("http://localhost:9090/api/v1/status/buildinfo").mock(
        side_effect=httpx.ConnectError("refused")
    )
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert "prometheus  WARN     " in out and "set PROMETHEUS_URL=" in out
    columns = {line.index(line.split()[2]) for line in out.splitlines()}
    assert columns == {21}, "the details start in one column"


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"SLACK_CHANNEL": "C0FAKE"}, "SLACK_BOT_TOKEN: not set, but SLACK_CHANNEL is"),
        ({"SLACK_BOT_TOKEN": "xoxb-fake"}, "SLACK_CHANNEL: not set, but SLACK_BOT_TOKEN is"),
        ({"TELEGRAM_BOT_TOKEN": "1:fake"}, "TELEGRAM_CHAT_ID: not set, but TELEGRAM_BOT_TOKEN is"),
        ({"TELEGRAM_CHAT_ID": "-100"}, "TELEGRAM_BOT_TOKEN: not set, but TELEGRAM_CHAT_ID is"),
        ({"TELEGRAM_THREAD_ID": "7"}, "TELEGRAM_THREAD_ID: set, but Telegram is not configured"),
        ({"SLACK_MATCHERS": "severity=critical"}, "SLACK_MATCHERS: set, but Slack is not"),
        ({"TELEGRAM_MATCHERS": "a=b"}, "TELEGRAM_MATCHERS: set, but Telegram is not"),
        ({"PROMETHEUS_URL": "localhost:9090"}, "PROMETHEUS_URL: must be an http:// or https://"),
        ({"LLM_BASE_URL": "ftp://llm"}, "LLM_BASE_URL: must be an http:// or https://"),
        ({"SLACK_API_URL": "slack.com/api"}, "SLACK_API_URL: must be an http"),
        ({"TELEGRAM_API_URL": "https://"}, "TELEGRAM_API_URL: must be an http"),
        ({"SLACK_WEBHOOK_URL": "hooks/T0/B0/secret"}, "SLACK_WEBHOOK_URL: must be an https://"),
        ({"LOG_LEVEL": "verbose"}, "LOG_LEVEL: must be one of DEBUG, INFO"),
        ({"ALERTMANAGER_URL": "alertmanager:9093"}, "ALERTMANAGER_URL: must be an http"),
        (
            {"STORE_URL": "mysql://u:pw@db/x"},
            "STORE_URL: unsupported scheme 'mysql': use sqlite:///",
        ),
        ({"STORE_URL": "postgresql://u:pw@db/x?sslmode"}, "STORE_URL: not a valid postgresql://"),
    ],
)
def test_a_wrong_or_half_configuration_stops_at_start_in_one_line(
    env, capsys, settings, expected
) -> None:
    for name, value in settings.items():
        env.setenv(name, value)
    for command in (["check"], ["serve"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err == f"invalid configuration: {expected}" + err.split(expected, 1)[1]
        assert err.count("\n") == 1 and "Traceback" not in err
        assert "hooks/T0/B0/secret" not in err and ":pw@" not in err


def test_serve_on_a_port_in_use_says_so_in_one_line(env, capsys) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env.setenv("HOST", "127.0.0.1")
        env.setenv("PORT", str(taken.getsockname()[1]))
        assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cannot listen on 127.0.0.1:") and "in use" in err
    assert err.count("\n") == 1


def test_replay_leaves_no_data_directory_behind(env, respx_mock, tmp_path, capsys) -> None:
    env.delenv("STORE_URL")
    respx_mock.post(f"{PROMETHEUS_URL}/api/v1/query_range").mock(return_value=matrix())
    path = str(FIXTURES / "alertmanager-0.25-firing_apidown_binance.json")
    assert main(["replay", path]) == 0
    assert not (tmp_path / "data").exists()
    assert main(["replay", path, "--store", f"sqlite:///{tmp_path}/kept.db"]) == 0
    assert (tmp_path / "kept.db").exists()


def test_a_missing_prompts_dir_stops_serve_in_one_line(env, tmp_path, capsys) -> None:
    env.setenv("PROMPTS_DIR", str(tmp_path / "nowhere"))
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("invalid configuration: PROMPTS_DIR: cannot read prompt template")


async def test_the_listening_socket_answers_without_nagle_delay() -> None:
    sock = listen("127.0.0.1", 0)
    sock.listen()
    accepted: asyncio.Future[asyncio.BaseTransport] = asyncio.get_running_loop().create_future()

    class Accept(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            accepted.set_result(transport)

    server = await asyncio.get_running_loop().create_server(Accept, sock=sock)
    _, writer = await asyncio.open_connection(*sock.getsockname())
    transport = await asyncio.wait_for(accepted, 5)
    conn = transport.get_extra_info("socket")
    assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), "Nagle is on"
    writer.close()
    await writer.wait_closed()
    transport.close()
    server.close()
    await server.wait_closed()


def test_replay_with_a_malformed_store_url_says_so_without_the_password(env, capsys) -> None:
    path = str(FIXTURES / "alertmanager-0.25-firing_apidown_binance.json")
    assert main(["replay", path, "--store", "postgresql://u:s3cretpw%zz@db/x"]) == 2
    err = capsys.readouterr().err
    assert err == "invalid --store: not a valid postgresql:// URL\n"


def test_check_lists_the_runbooks_and_the_alerts_they_cover(env, respx_mock, capsys, tmp_path):
    respx_mock.get(f"{PROMETHEUS_URL}/api/v1/status/buildinfo").mock(
        return_value=httpx.Response(200, json={"status": "success", "data": {"version": "2.42.0"}})
    )
    books = tmp_path / "runbooks"
    books.mkdir()
    (books / "APIDown.md").write_text("# down\n- look\n")
    (books / "limits.md").write_text("---\nalertname: [RateLimitExhausted]\n---\n# limits\n")
    env.setenv("RUNBOOKS_DIR", str(books))
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert f"runbooks    OK       2 in {books}; alerts APIDown, RateLimitExhausted" in out


def test_a_runbooks_dir_that_is_not_a_directory_stops_at_start(env, capsys, tmp_path) -> None:
    env.setenv("RUNBOOKS_DIR", str(tmp_path / "missing"))
    assert main(["check"]) == 2
    assert "invalid configuration: RUNBOOKS_DIR:" in capsys.readouterr().err


def buildinfo(respx_mock) -> None:
    respx_mock.get(f"{PROMETHEUS_URL}/api/v1/status/buildinfo").mock(
        return_value=httpx.Response(200, json={"status": "success", "data": {"version": "2.42.0"}})
    )


def test_check_says_which_chats_have_silence_buttons_and_reaches_alertmanager(
    env, respx_mock, capsys
) -> None:
    buildinfo(respx_mock)
    respx_mock.get("http://am.example:9093/api/v2/silences").mock(
        return_value=httpx.Response(200, json=[])
    )
    env.setenv("ALERTMANAGER_URL", "http://am.example:9093")
    env.setenv("TELEGRAM_BOT_TOKEN", "123456:FAKE-telegram-token-for-tests")
    env.setenv("TELEGRAM_CHAT_ID", "-100123")
    env.setenv("TELEGRAM_ALLOWED_USER_IDS", "12, 34")
    env.setenv("SLACK_SIGNING_SECRET", "fake-signing-secret")  # webhook-less, bot-less: no Slack
    respx_mock.post(url__regex=r".*/getMe").mock(return_value=httpx.Response(500))
    main(["check"])
    out = capsys.readouterr().out
    assert (
        "silences    OK       http://am.example:9093: 0 silences; buttons: Telegram (2 users may tap)"
    ) in out


def test_check_says_why_there_are_no_buttons_without_alertmanager(env, respx_mock, capsys) -> None:
    buildinfo(respx_mock)
    env.setenv("SLACK_SIGNING_SECRET", "fake-signing-secret")
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert "SLACK_SIGNING_SECRET set, but no ALERTMANAGER_URL: no silence buttons" in out


def test_check_fails_when_alertmanager_is_unreachable(env, respx_mock, capsys) -> None:
    buildinfo(respx_mock)
    respx_mock.get("http://am.example:9093/api/v2/silences").mock(
        side_effect=httpx.ConnectError("refused")
    )
    env.setenv("ALERTMANAGER_URL", "http://am.example:9093")
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert "silences    FAIL     Alertmanager unreachable listing silences (ConnectError)" in out
    assert "buttons" not in out
