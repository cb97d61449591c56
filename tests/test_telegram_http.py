"""python-telegram-bot on aiohttp: the Bot API's requests as PTB builds them, one kept-alive pool,
timeouts and network errors as PTB's own errors, and never the token in an error."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from telegram import Bot
from telegram.error import NetworkError, TimedOut
from yarl import URL

from app.notifiers.telegram_http import AiohttpRequest, env_proxy
from tests.loopback import FakeTelegram

TOKEN = FakeTelegram.token


class BotAPI:
    """A Bot API answering every method with a message, recording what arrived and from where."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[dict[str, Any]] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        fields = {k: (v.file.read() if hasattr(v, "file") else v) for k, v in form.items()}
        peer = request.transport.get_extra_info("peername") if request.transport else None
        files = {k: (v.filename, v.content_type) for k, v in form.items() if hasattr(v, "file")}
        self.calls.append(
            {
                "method": request.match_info["method"],
                "peer": peer,
                "user-agent": request.headers.get("User-Agent"),
                "content-type": request.content_type,
                "files": files,
                **fields,
            }
        )
        await asyncio.sleep(self.delay)
        message = {"message_id": len(self.calls), "date": 0, "chat": {"id": -1, "type": "group"}}
        return web.json_response({"ok": True, "result": message})

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return f"http://127.0.0.1:{self.port}/bot"


@pytest.fixture
async def api() -> AsyncIterator[BotAPI]:
    server = BotAPI()
    yield server
    assert server.runner is not None
    await server.runner.cleanup()


def bot(base_url: str, **timeouts: float) -> Bot:
    return Bot(TOKEN, base_url=base_url, request=AiohttpRequest(**timeouts))


async def test_messages_reuse_one_connection(api: BotAPI) -> None:
    telegram = bot(await api.start())
    for text in ("one", "two", "three"):
        await telegram.send_message(chat_id=-100123, text=text, parse_mode="HTML")
    await telegram.request.shutdown()
    assert [c["text"] for c in api.calls] == ["one", "two", "three"]
    assert api.calls[0]["parse_mode"] == "HTML" and api.calls[0]["chat_id"] == "-100123"
    assert len({c["peer"] for c in api.calls}) == 1, "one kept-alive connection, not one per call"


async def test_files_go_as_multipart_with_the_other_parameters(api: BotAPI) -> None:
    telegram = bot(await api.start())
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    await telegram.send_photo(chat_id=-100123, photo=png, caption="latency, 30 min")
    await telegram.request.shutdown()
    [call] = api.calls
    assert call["method"] == "sendPhoto" and call["photo"] == png
    assert call["caption"] == "latency, 30 min"


async def test_a_slow_api_is_a_timeout(api: BotAPI) -> None:
    api.delay = 1
    telegram = bot(await api.start(), read_timeout=0.2, write_timeout=0.1)
    with pytest.raises(TimedOut):
        await telegram.send_message(chat_id=-100123, text="late")
    await telegram.request.shutdown()


async def test_an_unreachable_api_is_a_network_error_without_the_token() -> None:
    telegram = bot("http://127.0.0.1:9/bot")
    with pytest.raises(NetworkError) as caught:
        await telegram.send_message(chat_id=-100123, text="x")
    await telegram.request.shutdown()
    assert "127.0.0.1:9" in caught.value.message
    assert TOKEN not in caught.value.message
    assert caught.value.__cause__ is None and caught.value.__context__ is None, "aiohttp's text"


class ForwardProxy:
    """An HTTP proxy on loopback that answers every request itself, as the Bot API would, and
    records the request line and headers it was sent."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        line, *fields = head.strip().split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}
        await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append((line, headers))
        body = b'{"ok": true, "result": {"message_id": 1, "date": 0, "chat": {"id": -1, "type": "group"}}}'
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()


async def test_requests_go_through_the_environments_proxy_unless_no_proxy_exempts_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = ForwardProxy()
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://egress:s3cret@127.0.0.1:{port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    try:
        telegram = bot("http://api.telegram.invalid/bot")
        await telegram.send_message(chat_id=-100123, text="via the proxy")
        await telegram.send_message(chat_id=-100123, text="again")
        await telegram.request.shutdown()
        [(line, headers), _] = proxy.requests
        assert line.startswith("POST http://api.telegram.invalid/bot") and "sendMessage" in line
        assert headers["proxy-authorization"] == "Basic ZWdyZXNzOnMzY3JldA=="  # egress:s3cret
        assert headers["user-agent"] == AiohttpRequest.USER_AGENT

        monkeypatch.setenv("NO_PROXY", "api.telegram.invalid")
        direct = bot("http://api.telegram.invalid/bot")
        with pytest.raises(NetworkError):  # straight to a name that does not resolve
            await direct.send_message(chat_id=-100123, text="direct")
        await direct.request.shutdown()
        assert len(proxy.requests) == 2
    finally:
        server.close()
        await server.wait_closed()


async def test_requests_name_python_telegram_bot_as_their_user_agent_and_go_as_a_form(
    api: BotAPI,
) -> None:
    telegram = bot(await api.start())
    await telegram.send_message(chat_id=-100123, text="hello")
    await telegram.request.shutdown()
    [call] = api.calls
    assert call["user-agent"] == AiohttpRequest.USER_AGENT
    assert call["content-type"] == "application/x-www-form-urlencoded"


async def test_a_file_keeps_its_filename_and_media_type(api: BotAPI) -> None:
    telegram = bot(await api.start())
    await telegram.send_document(chat_id=-100123, document=b"x,y\n1,2\n", filename="series.csv")
    await telegram.request.shutdown()
    [call] = api.calls
    assert call["content-type"] == "multipart/form-data"
    assert call["document"] == b"x,y\n1,2\n"
    filename, media_type = call["files"]["document"]
    assert filename == "series.csv" and media_type == "text/csv"


async def test_a_request_after_shutdown_opens_a_new_pool(api: BotAPI) -> None:
    telegram = bot(await api.start())
    await telegram.send_message(chat_id=-100123, text="before")
    await telegram.request.shutdown()
    await telegram.send_message(chat_id=-100123, text="after")
    await telegram.request.shutdown()
    assert [c["text"] for c in api.calls] == ["before", "after"]
    assert api.calls[0]["peer"] != api.calls[1]["peer"], "the old connection was closed"


async def test_shutdown_before_any_request_is_harmless() -> None:
    request = AiohttpRequest()
    await request.shutdown()
    await request.shutdown()


def test_the_read_timeout_is_the_one_configured() -> None:
    assert AiohttpRequest(read_timeout=3).read_timeout == 3.0
    assert AiohttpRequest().read_timeout == 15.0


async def test_a_call_without_a_read_limit_waits_past_the_configured_one(api: BotAPI) -> None:
    api.delay = 0.5  # longer than any of the layer's limits, and than their sum but read's
    limits = {"connect_timeout": 0.1, "pool_timeout": 0.1, "write_timeout": 0.1}
    request = AiohttpRequest(read_timeout=0.05, **limits)
    await request.initialize()
    status, body = await request.do_request(
        f"{await api.start()}{TOKEN}/sendMessage", "POST", read_timeout=None
    )
    await request.shutdown()
    assert status == 200 and b'"ok": true' in body


async def test_a_call_with_its_own_read_limit_times_out_by_it(api: BotAPI) -> None:
    api.delay = 1.0
    request = AiohttpRequest()  # 15 s by default: this call's 0.05 s is the one that counts
    with pytest.raises(TimedOut) as caught:
        await request.do_request(
            f"{await api.start()}{TOKEN}/sendMessage", "POST", read_timeout=0.05
        )
    await request.shutdown()
    assert re.fullmatch(r"Telegram did not answer in time \(\w*Timeout\w*\)", caught.value.message)
    assert TOKEN not in caught.value.message
    assert caught.value.__cause__ is None and caught.value.__context__ is None


async def test_an_unreachable_api_says_which_host_and_port_and_why() -> None:
    telegram = bot("http://127.0.0.1:9/bot")
    with pytest.raises(NetworkError) as caught:
        await telegram.send_message(chat_id=-100123, text="x")
    await telegram.request.shutdown()
    message = caught.value.message
    assert message.startswith("aiohttp: cannot connect to 127.0.0.1:9 (") and message.endswith(")")
    assert "None" not in message and "()" not in message
    assert "[Errno" not in message, "the reason in words, not the OSError's repr"


@pytest.fixture
def proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def test_without_a_proxy_in_the_environment_requests_go_direct(
    proxy_env: pytest.MonkeyPatch,
) -> None:
    assert env_proxy(URL("https://api.telegram.org/bot1/getMe")) == (None, None)


def test_the_proxy_for_the_urls_scheme_is_used_and_its_credentials_become_a_header(
    proxy_env: pytest.MonkeyPatch,
) -> None:
    proxy_env.setenv("HTTPS_PROXY", "http://egress:s3cret@proxy.internal:3128")
    proxy_env.setenv("HTTP_PROXY", "http://plain.internal:8080")
    proxy, credentials = env_proxy(URL("https://api.telegram.org/bot1/getMe"))
    assert proxy == URL("http://proxy.internal:3128")
    assert credentials == {"Proxy-Authorization": "Basic ZWdyZXNzOnMzY3JldA=="}
    assert env_proxy(URL("http://api.telegram.org/bot1/getMe")) == (
        URL("http://plain.internal:8080"),
        None,
    )


def test_a_proxy_user_without_a_password_authenticates_with_an_empty_one(
    proxy_env: pytest.MonkeyPatch,
) -> None:
    proxy_env.setenv("HTTPS_PROXY", "http://egress@proxy.internal:3128")
    proxy, credentials = env_proxy(URL("https://api.telegram.org/bot1/getMe"))
    assert proxy == URL("http://proxy.internal:3128")
    assert credentials == {"Proxy-Authorization": "Basic ZWdyZXNzOg=="}  # egress:


def test_no_proxy_exempts_its_hosts_only(proxy_env: pytest.MonkeyPatch) -> None:
    proxy_env.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    proxy_env.setenv("NO_PROXY", "api.telegram.org")
    assert env_proxy(URL("https://api.telegram.org/bot1/getMe")) == (None, None)
    assert env_proxy(URL("https://other.example/x"))[0] == URL("http://proxy.internal:3128")


def test_a_url_without_a_host_never_goes_through_a_proxy(proxy_env: pytest.MonkeyPatch) -> None:
    proxy_env.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert env_proxy(URL("/bot1/getMe")) == (None, None)


async def test_https_through_a_proxy_sends_the_credentials_on_the_connect_only(
    proxy_env: pytest.MonkeyPatch,
) -> None:
    proxy = ForwardProxy()  # answers the CONNECT itself, so no tunnel to Telegram is opened
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proxy_env.setenv("HTTPS_PROXY", f"http://egress:s3cret@127.0.0.1:{port}")
    try:
        telegram = bot("https://api.telegram.invalid/bot")
        with pytest.raises(NetworkError):  # the "tunnel" answers JSON, not TLS
            await telegram.send_message(chat_id=-100123, text="tunnelled")
        await telegram.request.shutdown()
    finally:
        server.close()
        await server.wait_closed()
    [(line, headers)] = proxy.requests
    assert line.startswith("CONNECT api.telegram.invalid:443 ")
    assert headers["proxy-authorization"] == "Basic ZWdyZXNzOnMzY3JldA=="


class TricklingAPI:
    """Answers 200 at once, then sends its body a byte every 0.1 s for six seconds: no gap is
    long, but the answer never ends in time."""

    def __init__(self) -> None:
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(60):
            await response.write(b" ")
            await asyncio.sleep(0.1)
        await response.write_eof()
        return response

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self.handle)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{self.runner.addresses[0][1]}/bot{TOKEN}/sendMessage"


@pytest.mark.parametrize("per_call", [False, True])
async def test_a_trickling_answer_is_cut_off_by_the_sum_of_the_timeouts(per_call: bool) -> None:
    api = TricklingAPI()
    url = await api.start()
    limits = {"connect_timeout": 0.2, "pool_timeout": 0.2, "write_timeout": 0.2}
    try:
        if per_call:  # the layer's own limits are 15 s; this call's are what count
            request = AiohttpRequest()
            call = request.do_request(url, "POST", read_timeout=2.0, **limits)
        else:
            request = AiohttpRequest(read_timeout=2.0, **limits)
            call = request.do_request(url, "POST")
        with pytest.raises(TimedOut):
            await call
        await request.shutdown()
    finally:
        assert api.runner is not None
        await api.runner.cleanup()


async def test_the_pool_holds_at_most_pool_size_connections(api: BotAPI) -> None:
    api.delay = 0.3  # each answer keeps its connection busy while the other request waits
    telegram = Bot(TOKEN, base_url=await api.start(), request=AiohttpRequest(pool_size=1))
    await asyncio.gather(
        telegram.send_message(chat_id=-100123, text="one"),
        telegram.send_message(chat_id=-100123, text="two"),
    )
    await telegram.request.shutdown()
    assert len(api.calls) == 2
    assert len({c["peer"] for c in api.calls}) == 1, "the second waited for the one connection"


async def test_waiting_for_a_free_connection_is_bounded_by_the_connect_and_pool_limits(
    api: BotAPI,
) -> None:
    api.delay = 1.0  # the first request holds the only connection
    url = f"{await api.start()}{TOKEN}/sendMessage"
    request = AiohttpRequest(pool_size=1, connect_timeout=0.1, pool_timeout=0.1)
    first = asyncio.ensure_future(request.do_request(url, "POST"))
    while not api.calls:  # the first request is in the server, its connection taken
        await asyncio.sleep(0.01)
    with pytest.raises(TimedOut):
        await request.do_request(url, "POST")
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    await request.shutdown()


@pytest.mark.parametrize(
    "lifted",
    [
        ("read_timeout", "write_timeout", "connect_timeout", "pool_timeout"),
        ("connect_timeout",),
        ("pool_timeout",),
    ],
)
async def test_a_call_may_lift_any_of_its_limits(api: BotAPI, lifted: tuple[str, ...]) -> None:
    url = f"{await api.start()}{TOKEN}/sendMessage"
    request = AiohttpRequest()
    status, _ = await request.do_request(url, "POST", **dict.fromkeys(lifted, None))
    await request.shutdown()
    assert status == 200
