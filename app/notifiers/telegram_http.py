"""python-telegram-bot's HTTP layer on aiohttp, the client Slack's notifier already uses.

PTB's default layer is httpx. Profiled under an alert storm it cost seven times the CPU of a Slack
send per message (httpx checks every pooled connection for every request), and at 200 groups a
minute the Telegram send was the largest part of the service's event loop. This layer keeps PTB's
whole Bot API (methods, errors, retries decided from the status and body) and only moves the bytes:
PTB builds the request, `do_request` sends it and hands back the status and the body.

Errors never carry the URL: it contains the bot token.
"""

from __future__ import annotations

import urllib.request
from typing import IO

import aiohttp
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData
from yarl import URL

POOL_SIZE = 8  # Telegram allows ~30 messages a second per bot; more connections would not help


def _seconds(value: object, default: float | None) -> float | None:
    """A PTB timeout argument: DEFAULT_NONE means this layer's default; None means no limit."""
    if isinstance(value, (int, float)):
        return float(value)
    return None if value is None else default


def _form(request_data: RequestData) -> aiohttp.FormData:
    """Parameters and files as multipart/form-data (a photo, a document)."""
    form = aiohttp.FormData()
    for name, value in request_data.json_parameters.items():
        form.add_field(name, value)
    for name, (filename, content, mimetype) in request_data.multipart_data.items():
        payload: bytes | IO[bytes] = content
        form.add_field(name, payload, filename=filename, content_type=mimetype)
    return form


def env_proxy(url: URL) -> tuple[URL | None, dict[str, str] | None]:
    """The proxy HTTPS_PROXY / HTTP_PROXY name for `url` (and its credentials, as a header),
    unless NO_PROXY exempts its host: what aiohttp's `trust_env` looks up on every request, in a
    thread of the executor (two hops per request, a tenth of a storm's CPU); here once per host."""
    if url.host is None or urllib.request.proxy_bypass(url.host):
        return None, None
    proxy = urllib.request.getproxies().get(url.scheme)
    if not proxy:
        return None, None
    parsed = URL(proxy)
    if parsed.user is None:
        return parsed, None
    credentials = aiohttp.helpers.encode_basic_auth(parsed.user, parsed.password or "")
    return parsed.with_user(None), {"Proxy-Authorization": credentials}


def _reason(exc: BaseException) -> str:
    """What went wrong, without the URL (and its token) that aiohttp's messages can include."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port} ({exc.os_error.strerror or exc.os_error})"
    return type(exc).__name__


class AiohttpRequest(BaseRequest):
    def __init__(
        self,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
        write_timeout: float = 15.0,
        pool_timeout: float = 15.0,
        pool_size: int = POOL_SIZE,
    ) -> None:
        self._connect = connect_timeout
        self._read = read_timeout
        self._write = write_timeout
        self._pool = pool_timeout
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[tuple[str, str | None], tuple[URL | None, dict[str, str] | None]] = {}

    @property
    def read_timeout(self) -> float | None:
        return self._read

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._pool_size)
            # HTTPS_PROXY / NO_PROXY, as PTB's httpx layer honoured (egress proxies): `env_proxy`
            self._session = aiohttp.ClientSession(connector=connector)

    async def shutdown(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def do_request(  # noqa: PLR0917 - the signature is PTB's
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: object = BaseRequest.DEFAULT_NONE,
        write_timeout: object = BaseRequest.DEFAULT_NONE,
        connect_timeout: object = BaseRequest.DEFAULT_NONE,
        pool_timeout: object = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        await self.initialize()
        assert self._session is not None
        connect = _seconds(connect_timeout, self._connect)
        pool = _seconds(pool_timeout, self._pool)
        read = _seconds(read_timeout, self._read)
        write = _seconds(write_timeout, self._write)
        # aiohttp has no write timeout and its read timeout is a gap between chunks, so the whole
        # request is also bounded by the sum: an upload or a trickling answer cannot hang a worker.
        limits = (connect, pool, write, read)
        timeout = aiohttp.ClientTimeout(
            total=None if None in limits else sum(x for x in limits if x is not None),
            connect=None if connect is None or pool is None else connect + pool,
            sock_connect=connect,
            sock_read=read,
        )
        data: aiohttp.FormData | dict[str, str] | None = None
        if request_data is not None:
            multipart = bool(request_data.multipart_data)
            data = _form(request_data) if multipart else request_data.json_parameters
        error: NetworkError
        target = URL(url)
        where = (target.scheme, target.host)
        if where not in self._proxies:
            self._proxies[where] = env_proxy(target)
        proxy, credentials = self._proxies[where]
        headers = {"User-Agent": self.USER_AGENT}
        tunnelled = target.scheme == "https"  # credentials go on the CONNECT, else on the request
        if credentials and not tunnelled:
            headers |= credentials
        proxy_headers = credentials if tunnelled else None
        try:
            async with self._session.request(
                method,
                target,
                data=data,
                headers=headers,
                timeout=timeout,
                proxy=proxy,
                proxy_headers=proxy_headers,
            ) as response:
                return response.status, await response.read()
        except TimeoutError as exc:
            error = TimedOut(f"Telegram did not answer in time ({_reason(exc)})")
        except (aiohttp.ClientError, OSError) as exc:
            error = NetworkError(f"aiohttp: {_reason(exc)}")
        # Raised out here, not in the except blocks: aiohttp's exception (its text can hold the
        # URL, token and all) must not ride along as __context__.
        raise error
