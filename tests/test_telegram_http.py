"""python-telegram-bot on aiohttp: the Bot API's requests as PTB builds them, one kept-alive pool,
timeouts and network errors as PTB's own errors, and never the token in an error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from telegram import Bot
from telegram.error import NetworkError, TimedOut

from app.notifiers.telegram_http import AiohttpRequest
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
        self.calls.append({"method": request.match_info["method"], "peer": peer, **fields})
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

        monkeypatch.setenv("NO_PROXY", "api.telegram.invalid")
        direct = bot("http://api.telegram.invalid/bot")
        with pytest.raises(NetworkError):  # straight to a name that does not resolve
            await direct.send_message(chat_id=-100123, text="direct")
        await direct.request.shutdown()
        assert len(proxy.requests) == 2
    finally:
        server.close()
        await server.wait_closed()
