"""Alertmanager API v2 client for silences, only ever at ALERTMANAGER_URL.

`create_silence` is idempotent: a double tap on a chat button, or a retry after a lost answer,
finds the silence the first call made (same matchers, same creator, an end within
`ENDS_AT_TOLERANCE` of the one asked for, still active or pending) and returns it with
`created=False` instead of posting a second. Calls in one process for the same matchers are
serialised, so two at once also make one; Alertmanager has no conditional create, so two processes
racing can still make two.

`expire_silence` of a silence already expired is a success (Alertmanager itself treats it as a
no-op); of one Alertmanager does not know (a wrong id, or one garbage-collected after its
retention) it raises `AlertmanagerError` with `not_found` set, so a caller can say so plainly.

Every failure is one `AlertmanagerError` whose message never holds the base URL (it may carry
credentials); Alertmanager's own error text is kept, on one line and shortened.
"""

from __future__ import annotations

import asyncio
import re
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # loaded by whoever makes the client (silencing.open_silencer), not on import:
    import httpx  # the webhook's process, without Slack's buttons, never needs it

ENDS_AT_TOLERANCE = timedelta(minutes=5)
MAX_DETAIL = 200
SILENCE_ID = re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
LIVE_STATES = ("active", "pending")


class AlertmanagerError(Exception):
    """A silence call failed; `status` is Alertmanager's HTTP status when it answered, and
    `not_found` tells that it does not know the silence (a 404, or 0.25's 500 saying so)."""

    def __init__(self, message: str, status: int | None = None, not_found: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.not_found = not_found


@dataclass(frozen=True)
class Matcher:
    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    state: str  # active, pending or expired
    created: bool = False  # whether the call that returned it made it


def exact_matchers(labels: Mapping[str, str]) -> list[Matcher]:
    """One equality matcher per label, by name. Label values are untrusted text: never a regex."""
    return [Matcher(name, value) for name, value in sorted(labels.items())]


def rfc3339(moment: datetime) -> str:
    return _utc(moment).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("a naive datetime: silence times must be timezone-aware")
    return moment.astimezone(UTC)


class AlertmanagerClient:
    """Each request is bounded by `timeout` seconds; `now` is the clock (injected by tests)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        timeout: float = 5.0,
        *,
        tolerance: timedelta = ENDS_AT_TOLERANCE,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/") + "/api/v2"
        self._timeout = timeout
        self._tolerance = tolerance
        self._now = now
        # a lock lives while a call holds or awaits it: the map does not grow with every key seen
        self._locks: weakref.WeakValueDictionary[frozenset[Matcher], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    async def create_silence(
        self,
        matchers: Iterable[Matcher],
        ends_at: datetime,
        created_by: str,
        comment: str,
        starts_at: datetime | None = None,
    ) -> Silence:
        """The live silence already made for these matchers, creator and end, else a new one.

        ValueError for arguments no Alertmanager would take (no matchers, naive or reversed times).
        """
        wanted = tuple(dict.fromkeys(matchers))
        if not wanted:
            raise ValueError("a silence needs at least one matcher")
        start, end = _utc(starts_at or self._now()), _utc(ends_at)
        if end <= start:
            raise ValueError("a silence must end after it starts")
        key = frozenset(wanted)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            for found in sorted(await self.list_silences(), key=lambda s: abs(s.ends_at - end)):
                if (
                    found.state in LIVE_STATES
                    and frozenset(found.matchers) == key
                    and found.created_by == created_by
                    and abs(found.ends_at - end) <= self._tolerance
                ):
                    return found
            body = {
                "matchers": [_wire_matcher(m) for m in wanted],
                "startsAt": rfc3339(start),
                "endsAt": rfc3339(end),
                "createdBy": created_by,
                "comment": comment,
            }
            answer = await self._call("POST", "/silences", "creating a silence", body)
            silence_id = answer.get("silenceID") if isinstance(answer, dict) else None
            if not isinstance(silence_id, str) or not SILENCE_ID.fullmatch(silence_id):
                raise AlertmanagerError("Alertmanager's answer to a new silence has no silence id")
            state = "pending" if start > self._now() else "active"
            return Silence(silence_id, wanted, start, end, created_by, comment, state, created=True)

    async def list_silences(self) -> list[Silence]:
        """Every silence Alertmanager holds, expired ones included.

        No `filter`: it would put untrusted label text through Alertmanager's matcher parser, whose
        quoting differs between versions; the comparison is done here instead.
        """
        answer = await self._call("GET", "/silences", "listing silences")
        if not isinstance(answer, list):
            raise AlertmanagerError("Alertmanager's list of silences is not a list")
        return [_silence(raw) for raw in answer]

    async def get_silence(self, silence_id: str) -> Silence:
        path = f"/silence/{_checked_id(silence_id)}"
        return _silence(await self._call("GET", path, f"reading silence {silence_id}"))

    async def expire_silence(self, silence_id: str) -> None:
        """Expire now; already expired is fine, unknown raises with `not_found` (module doc)."""
        path = f"/silence/{_checked_id(silence_id)}"
        await self._call("DELETE", path, f"expiring silence {silence_id}", expect_json=False)

    async def _call(
        self, method: str, path: str, what: str, body: object = None, expect_json: bool = True
    ) -> Any:
        import httpx  # noqa: PLC0415 - loaded already: self._http is one of its clients

        try:
            async with asyncio.timeout(self._timeout):
                response = await self._http.request(
                    method, self._base + path, json=body, timeout=self._timeout
                )
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise AlertmanagerError(
                f"Alertmanager timed out after {self._timeout:g}s {what}"
            ) from exc
        except httpx.HTTPError as exc:
            raise AlertmanagerError(
                f"Alertmanager unreachable {what} ({type(exc).__name__})"
            ) from exc
        if not response.is_success:
            detail = _detail(response)
            not_found = response.status_code == 404 or detail == "silence not found"
            suffix = f": {detail}" if detail else ""
            raise AlertmanagerError(
                f"Alertmanager answered HTTP {response.status_code} {what}{suffix}",
                response.status_code,
                not_found,
            )
        if not expect_json:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise AlertmanagerError(f"Alertmanager's answer {what} is not JSON") from exc


def _checked_id(silence_id: str) -> str:
    """The id as it may go into a URL path: a UUID, nothing else (it comes from chat buttons)."""
    if not isinstance(silence_id, str) or not SILENCE_ID.fullmatch(silence_id):
        raise AlertmanagerError("not a silence id (a UUID)")
    return silence_id.lower()


def _wire_matcher(matcher: Matcher) -> dict[str, object]:
    return {
        "name": matcher.name,
        "value": matcher.value,
        "isRegex": matcher.is_regex,
        "isEqual": matcher.is_equal,
    }


def _detail(response: httpx.Response) -> str:
    """Alertmanager's error text (a JSON string, or go-swagger's {code, message}), on one line."""
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if isinstance(body, dict):
        body = body.get("message", "")
    text = " ".join(str(body).split())
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"


def _silence(raw: Any) -> Silence:
    try:
        return Silence(
            id=_str(raw["id"]),
            matchers=tuple(
                Matcher(
                    _str(m["name"]),
                    _str(m["value"]),
                    _bool(m["isRegex"]),
                    _bool(m.get("isEqual", True)),  # absent before Alertmanager 0.22
                )
                for m in raw["matchers"]
            ),
            starts_at=_time(raw["startsAt"]),
            ends_at=_time(raw["endsAt"]),
            created_by=_str(raw["createdBy"]),
            comment=_str(raw.get("comment", "")),
            state=_str(raw["status"]["state"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise AlertmanagerError(
            "Alertmanager sent a silence in a shape this client cannot read"
        ) from exc


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected a boolean, got {type(value).__name__}")
    return value


def _time(value: object) -> datetime:
    return _utc(datetime.fromisoformat(_str(value)))
