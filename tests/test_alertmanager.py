import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import respx

from app.alertmanager import (
    AlertmanagerClient,
    AlertmanagerError,
    Matcher,
    exact_matchers,
    rfc3339,
)

AM = "http://am.example:9093"
SILENCES = f"{AM}/api/v2/silences"
NOW = datetime(2026, 11, 21, 10, 30, tzinfo=UTC)
ENDS = NOW + timedelta(hours=1)
LABELS = {"alertname": "APIDown", "exchange": "binance"}
ID = "d0264637-384f-4f68-9d7d-07aafa3006c5"


def client(http: httpx.AsyncClient, base: str = AM, **options: Any) -> AlertmanagerClient:
    return AlertmanagerClient(http, base, now=lambda: NOW, **options)


def wire_silence(
    silence_id: str = ID,
    labels: dict[str, str] = LABELS,
    ends: datetime = ENDS,
    created_by: str = "alice",
    state: str = "active",
) -> dict[str, Any]:
    """A silence as Alertmanager 0.25 lists it."""
    return {
        "id": silence_id,
        "status": {"state": state},
        "updatedAt": rfc3339(NOW),
        "comment": "from Slack",
        "createdBy": created_by,
        "startsAt": rfc3339(NOW),
        "endsAt": rfc3339(ends),
        "matchers": [
            {"isEqual": True, "isRegex": False, "name": k, "value": v} for k, v in labels.items()
        ],
    }


class FakeAlertmanager:
    """The silence endpoints over respx, with state; `delay` makes each listing yield a while,
    so two unserialised callers would both list before either posts."""

    def __init__(self, router: respx.MockRouter, delay: float = 0) -> None:
        self.silences: list[dict[str, Any]] = []
        self.delay = delay
        self.listing = router.get(SILENCES).mock(side_effect=self._list)
        self.posting = router.post(SILENCES).mock(side_effect=self._post)

    async def _list(self, request: httpx.Request) -> httpx.Response:
        snapshot = json.loads(json.dumps(self.silences))
        await asyncio.sleep(self.delay)
        return httpx.Response(200, json=snapshot)

    async def _post(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        silence_id = str(uuid.uuid4())
        self.silences.append(
            {**body, "id": silence_id, "status": {"state": "active"}, "updatedAt": body["startsAt"]}
        )
        return httpx.Response(200, json={"silenceID": silence_id})


async def test_create_posts_exact_matchers_and_rfc3339_utc_times(
    respx_mock: respx.MockRouter,
) -> None:
    fake = FakeAlertmanager(respx_mock)
    async with httpx.AsyncClient() as http:
        silence = await client(http).create_silence(
            exact_matchers(LABELS), ENDS, "alice", "from Slack"
        )
    assert fake.posting.call_count == 1
    assert json.loads(fake.posting.calls[0].request.content) == {
        "matchers": [
            {"name": "alertname", "value": "APIDown", "isRegex": False, "isEqual": True},
            {"name": "exchange", "value": "binance", "isRegex": False, "isEqual": True},
        ],
        "startsAt": "2026-11-21T10:30:00.000000Z",
        "endsAt": "2026-11-21T11:30:00.000000Z",
        "createdBy": "alice",
        "comment": "from Slack",
    }
    assert silence.id == fake.silences[0]["id"]
    assert silence.created
    assert silence.state == "active"
    assert silence.matchers == tuple(exact_matchers(LABELS))
    assert (silence.starts_at, silence.ends_at) == (NOW, ENDS)


async def test_returned_times_are_utc_whatever_zone_was_asked(respx_mock: respx.MockRouter) -> None:
    FakeAlertmanager(respx_mock)
    tokyo = timezone(timedelta(hours=9))
    async with httpx.AsyncClient() as http:
        silence = await client(http).create_silence(
            exact_matchers(LABELS), ENDS.astimezone(tokyo), "alice", "c"
        )
    assert silence.ends_at == ENDS
    assert silence.ends_at.tzinfo is UTC
    assert silence.starts_at.tzinfo is UTC


def test_matchers_from_labels_are_literal_equality_whatever_the_text() -> None:
    hostile = {"b": 'x", alertname=~".*', "a": ".*\n=~ {}"}
    assert exact_matchers(hostile) == [
        Matcher("a", ".*\n=~ {}", is_regex=False, is_equal=True),
        Matcher("b", 'x", alertname=~".*', is_regex=False, is_equal=True),
    ]


def test_times_are_serialised_as_utc() -> None:
    plus_three = timezone(timedelta(hours=3))
    assert rfc3339(datetime(2026, 1, 1, 3, 0, 0, 5, tzinfo=plus_three)) == (
        "2026-01-01T00:00:00.000005Z"
    )
    with pytest.raises(ValueError, match="naive"):
        rfc3339(datetime(2026, 1, 1))


async def test_future_start_makes_a_pending_silence(respx_mock: respx.MockRouter) -> None:
    FakeAlertmanager(respx_mock)
    async with httpx.AsyncClient() as http:
        silence = await client(http).create_silence(
            exact_matchers(LABELS), ENDS, "alice", "c", starts_at=NOW + timedelta(minutes=10)
        )
    assert silence.state == "pending"


async def test_identical_live_silence_is_returned_instead_of_a_second(
    respx_mock: respx.MockRouter,
) -> None:
    fake = FakeAlertmanager(respx_mock)
    fake.silences.append(wire_silence(ends=ENDS + timedelta(minutes=4)))
    reordered = list(reversed(exact_matchers(LABELS)))
    async with httpx.AsyncClient() as http:
        silence = await client(http).create_silence(reordered, ENDS, "alice", "another comment")
    assert fake.posting.call_count == 0
    assert silence.id == ID
    assert not silence.created
    assert silence.ends_at == ENDS + timedelta(minutes=4)


async def test_double_tap_yields_one_silence(respx_mock: respx.MockRouter) -> None:
    fake = FakeAlertmanager(respx_mock)
    async with httpx.AsyncClient() as http:
        am = client(http)
        first = await am.create_silence(exact_matchers(LABELS), ENDS, "alice", "c")
        second = await am.create_silence(
            exact_matchers(LABELS), ENDS + timedelta(seconds=3), "alice", "c"
        )
    assert fake.posting.call_count == 1
    assert first.id == second.id
    assert first.created and not second.created


async def test_concurrent_creates_for_the_same_matchers_post_once(
    respx_mock: respx.MockRouter,
) -> None:
    fake = FakeAlertmanager(respx_mock, delay=0.02)
    async with httpx.AsyncClient() as http:
        am = client(http)
        results = await asyncio.gather(
            *(am.create_silence(exact_matchers(LABELS), ENDS, "alice", "c") for _ in range(3))
        )
    assert fake.posting.call_count == 1
    assert {s.id for s in results} == {fake.silences[0]["id"]}
    assert [s.created for s in results].count(True) == 1


async def test_concurrent_creates_for_different_matchers_each_post(
    respx_mock: respx.MockRouter,
) -> None:
    fake = FakeAlertmanager(respx_mock, delay=0.02)
    async with httpx.AsyncClient() as http:
        am = client(http)
        await asyncio.gather(
            am.create_silence(exact_matchers(LABELS), ENDS, "alice", "c"),
            am.create_silence(exact_matchers({**LABELS, "exchange": "okx"}), ENDS, "alice", "c"),
        )
    assert fake.posting.call_count == 2


@pytest.mark.parametrize(
    "existing",
    [
        wire_silence(state="expired"),
        wire_silence(created_by="bob"),
        wire_silence(ends=ENDS + timedelta(minutes=6)),
        wire_silence(ends=ENDS - timedelta(minutes=6)),
        wire_silence(labels={"alertname": "APIDown"}),  # broader: not the same silence
        wire_silence(labels={**LABELS, "severity": "critical"}),  # narrower
        wire_silence(labels={**LABELS, "exchange": "binance2"}),
    ],
    ids=["expired", "other-creator", "ends-later", "ends-earlier", "subset", "superset", "value"],
)
async def test_a_silence_that_differs_is_not_reused(
    respx_mock: respx.MockRouter, existing: dict[str, Any]
) -> None:
    fake = FakeAlertmanager(respx_mock)
    fake.silences.append(existing)
    async with httpx.AsyncClient() as http:
        silence = await client(http).create_silence(exact_matchers(LABELS), ENDS, "alice", "c")
    assert fake.posting.call_count == 1
    assert silence.created


async def test_a_regex_silence_with_the_same_text_is_not_reused(
    respx_mock: respx.MockRouter,
) -> None:
    fake = FakeAlertmanager(respx_mock)
    regex = wire_silence()
    regex["matchers"][1]["isRegex"] = True
    fake.silences.append(regex)
    async with httpx.AsyncClient() as http:
        await client(http).create_silence(exact_matchers(LABELS), ENDS, "alice", "c")
    assert fake.posting.call_count == 1


@pytest.mark.parametrize(
    ("status", "body", "detail"),
    [
        (
            400,
            '"silence invalid: at least one matcher must not match the empty string"',
            "silence invalid: at least one matcher must not match the empty string",
        ),
        (
            422,
            '{"code":612,"message":"matchers in body should have at least 1 items"}',
            "matchers in body should have at least 1 items",
        ),
        (503, "Service Unavailable\n\n  try later", "Service Unavailable try later"),
        (500, "", ""),
    ],
)
async def test_error_status_becomes_alertmanager_error_with_its_text(
    respx_mock: respx.MockRouter, status: int, body: str, detail: str
) -> None:
    respx_mock.get(SILENCES).mock(return_value=httpx.Response(200, json=[]))
    respx_mock.post(SILENCES).mock(return_value=httpx.Response(status, text=body))
    async with httpx.AsyncClient() as http:
        with pytest.raises(AlertmanagerError) as caught:
            await client(http).create_silence(exact_matchers(LABELS), ENDS, "alice", "c")
    message = str(caught.value)
    assert message.startswith(f"Alertmanager answered HTTP {status} creating a silence")
    assert message.endswith(f": {detail}" if detail else "creating a silence")
    assert caught.value.status == status
    assert not caught.value.not_found


async def test_long_error_text_is_shortened_to_one_line(respx_mock: respx.MockRouter) -> None:
    respx_mock.get(SILENCES).mock(return_value=httpx.Response(500, text="panic\n" + "x" * 5000))
    async with httpx.AsyncClient() as http:
        with pytest.raises(AlertmanagerError) as caught:
            await client(http).list_silences()
    message = str(caught.value)
    assert "\n" not in message
    assert len(message) < 300
    assert message.endswith("…")


async def test_invalid_json_becomes_alertmanager_error(respx_mock: respx.MockRouter) -> None:
    respx_mock.get(SILENCES).mock(return_value=httpx.Response(200, text="<html>proxy</html>"))
    async with httpx.AsyncClient() as http:
        with pytest.raises(AlertmanagerError, match="not JSON"):
            await client(http).create_silence(exact_matchers(LABELS), ENDS, "alice", "c")


@pytest.mark.parametrize(
    "answer",
    [
        {"silences": []},
        [{"id": ID}],
        [{**wire_silence(), "matchers": [{"name": "a", "value": 1, "isRegex": False}]}],
        [{**wire_silence(), "endsAt": "tomorrow"}],
        [{**wire_silence(), "endsAt": "2026-11-21T11:30:00"}],  # no offset
        [{**wire_silence(), "status": None}],
    ],
    ids=["not-a-list", "no-fields", "value-not-text", "bad-time", "naive-time", "no-status"],
)
async def test_unexpected_listing_shape_becomes_alertmanager_error(
    respx_mock: respx.MockRouter, answer: object
) -> None:
    respx_mock.get(SILENCES).mock(return_value=httpx.Response(200, json=answer))
    async with httpx.AsyncClient() as http:
        with pytest.raises(AlertmanagerError):
            await client(http).list_silences()


@pytest.mark.parametrize("answer", [{}, {"silenceID": 7}, {"silenceID": "../x"}, ["x"]])
async def test_post_answer_without_a_silence_id_is_an_error(
    respx_mock: respx.MockRouter, answer: object
) -> None:
    respx_mock.get(SILENCES).mock(return_value=httpx.Response(200, json=[]))
    respx_mock.post(SILENCES).mock(return_value=httpx.Response(200, json=answer))
    async with httpx.AsyncClient() as http:
        with pytest.raises(AlertmanagerError, match="no silence id"):
            await client(http).create_silence(exact_matchers(LABELS), ENDS, "alice", "c")


async def test_transport_timeout_becomes_alertmanager_error(respx_mock: respx.MockRouter) -> None:
    respx_mock.get(SILENCES).mock(side_effect=httpx.ReadTimeout("no answer"))
    async with httpx.AsyncClient() as http:
        with pytest.raises(AlertmanagerError, match=r"timed out after 5s listing silences"):
            await client(http).list_silences()


async def test_slow_answer_is_cut_at_the_timeout(respx_mock: respx.MockRouter) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(10)
        return httpx.Response(200, json=[])

    respx_mock.get(SILENCES).mock(side_effect=slow)
    async with httpx.AsyncClient() as http:
        started = asyncio.get_running_loop().time()
        with pytest.raises(AlertmanagerError, match=r"timed out after 0\.05s"):
            await client(http, timeout=0.05).list_silences()
    assert asyncio.get_running_loop().time() - started < 2


async def test_unreachable_alertmanager_is_an_error_without_the_credentials(
    respx_mock: respx.MockRouter,
) -> None:
    route = respx_mock.route(host="am.example").mock(side_effect=httpx.ConnectError("refused"))
    base = "http://admin:s3cret-pass@am.example:9093"
    async with httpx.AsyncClient() as http:
        with pytest.raises(AlertmanagerError, match=r"unreachable listing silences") as caught:
            await client(http, base).list_silences()
    assert route.called
    assert str(caught.value) == "Alertmanager unreachable listing silences (ConnectError)"


async def test_error_messages_never_hold_the_base_url(respx_mock: respx.MockRouter) -> None:
    respx_mock.route(host="am.example").mock(return_value=httpx.Response(401, text="no"))
    base = "http://admin:s3cret-pass@am.example:9093/prefix/"
    async with httpx.AsyncClient() as http:
        with pytest.raises(AlertmanagerError) as caught:
            await client(http, base).get_silence(ID)
    assert "s3cret" not in str(caught.value)
    assert "am.example" not in str(caught.value)


async def test_base_url_path_prefix_is_kept(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.get(f"{AM}/am/api/v2/silences").mock(
        return_value=httpx.Response(200, json=[wire_silence()])
    )
    async with httpx.AsyncClient() as http:
        silences = await client(http, f"{AM}/am/").list_silences()
    assert route.called
    assert [s.id for s in silences] == [ID]


async def test_get_silence_reads_nanoseconds_and_an_absent_is_equal(
    respx_mock: respx.MockRouter,
) -> None:
    raw = {**wire_silence(), "endsAt": "2026-11-21T13:30:00.123456789+02:00"}
    del raw["matchers"][0]["isEqual"]  # Alertmanager before 0.22
    respx_mock.get(f"{AM}/api/v2/silence/{ID}").mock(return_value=httpx.Response(200, json=raw))
    async with httpx.AsyncClient() as http:
        silence = await client(http).get_silence(ID)
    assert silence.ends_at == datetime(2026, 11, 21, 11, 30, 0, 123456, tzinfo=UTC)
    assert silence.ends_at.tzinfo is UTC
    assert silence.matchers[0] == Matcher("alertname", "APIDown")
    assert (silence.state, silence.created) == ("active", False)


async def test_get_unknown_silence_is_not_found(respx_mock: respx.MockRouter) -> None:
    respx_mock.get(f"{AM}/api/v2/silence/{ID}").mock(return_value=httpx.Response(404))
    async with httpx.AsyncClient() as http:
        with pytest.raises(AlertmanagerError) as caught:
            await client(http).get_silence(ID)
    assert caught.value.not_found
    assert caught.value.status == 404


async def test_expire_deletes_the_silence(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.delete(f"{AM}/api/v2/silence/{ID}").mock(return_value=httpx.Response(200))
    async with httpx.AsyncClient() as http:
        assert await client(http).expire_silence(ID.upper()) is None
    assert route.call_count == 1


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(404),  # Alertmanager 0.26 and later
        httpx.Response(500, json="silence not found"),  # 0.25
    ],
)
async def test_expire_unknown_silence_is_not_found(
    respx_mock: respx.MockRouter, answer: httpx.Response
) -> None:
    respx_mock.delete(f"{AM}/api/v2/silence/{ID}").mock(return_value=answer)
    async with httpx.AsyncClient() as http:
        with pytest.raises(AlertmanagerError) as caught:
            await client(http).expire_silence(ID)
    assert caught.value.not_found


async def test_expire_failing_otherwise_is_not_not_found(respx_mock: respx.MockRouter) -> None:
    respx_mock.delete(f"{AM}/api/v2/silence/{ID}").mock(
        return_value=httpx.Response(500, json="write snapshot: disk full")
    )
    async with httpx.AsyncClient() as http:
        with pytest.raises(AlertmanagerError, match="disk full") as caught:
            await client(http).expire_silence(ID)
    assert not caught.value.not_found


@pytest.mark.parametrize(
    "bad_id",
    [
        "",
        "../silences",
        f"{ID}/../../status",
        f"{ID}?x=1",
        f"{ID}\n",
        f"{{{ID}}}",
        ID.replace("-", ""),
        f"urn:uuid:{ID}",
        "d0264637-384f-4f68-9d7d-07aafa3006cz",
    ],
)
async def test_silence_id_that_is_not_a_uuid_never_reaches_a_url(
    respx_mock: respx.MockRouter, bad_id: str
) -> None:
    route = respx_mock.route(host="am.example").mock(return_value=httpx.Response(200))
    async with httpx.AsyncClient() as http:
        am = client(http)
        with pytest.raises(AlertmanagerError, match="not a silence id"):
            await am.expire_silence(bad_id)
        with pytest.raises(AlertmanagerError, match="not a silence id"):
            await am.get_silence(bad_id)
    assert not route.called


@pytest.mark.parametrize(
    ("matchers", "ends", "starts", "message"),
    [
        ([], ENDS, None, "at least one matcher"),
        (exact_matchers(LABELS), NOW, None, "end after it starts"),
        (exact_matchers(LABELS), ENDS, ENDS + timedelta(seconds=1), "end after it starts"),
        (exact_matchers(LABELS), datetime(2030, 1, 1), None, "naive"),
        (exact_matchers(LABELS), ENDS, datetime(2026, 1, 1), "naive"),
    ],
)
async def test_arguments_no_alertmanager_would_take_raise_value_error(
    respx_mock: respx.MockRouter,
    matchers: list[Matcher],
    ends: datetime,
    starts: datetime | None,
    message: str,
) -> None:
    route = respx_mock.route(host="am.example").mock(return_value=httpx.Response(200))
    async with httpx.AsyncClient() as http:
        with pytest.raises(ValueError, match=message):
            await client(http).create_silence(matchers, ends, "alice", "c", starts_at=starts)
    assert not route.called
