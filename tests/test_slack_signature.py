import pytest
from slack_sdk.signature import SignatureVerifier

from app.slack_signature import SignatureError, sign, verify

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # the example secret of Slack's documentation
NOW = 1_531_420_618
BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect"
    b"&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554"
    b"%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)


class FixedClock:
    def now(self) -> float:
        return NOW


def test_slack_documentation_example_signature_is_reproduced() -> None:
    expected = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    assert sign(SECRET, str(NOW), BODY) == expected
    verify(SECRET, str(NOW), BODY, expected, now=NOW)


def test_valid_signature_passes_and_matches_slack_sdk() -> None:
    body = '{"type":"block_actions","actions":[{"value":"silence 1h ✓"}]}'.encode()
    timestamp = str(NOW - 10)
    signature = sign(SECRET, timestamp, body)
    verify(SECRET, timestamp, body, signature, now=NOW)
    sdk = SignatureVerifier(SECRET, clock=FixedClock())
    assert sdk.generate_signature(timestamp=timestamp, body=body) == signature
    assert sdk.is_valid(body=body, timestamp=timestamp, signature=signature)


def test_a_signature_slack_sdk_refuses_is_refused() -> None:
    sdk = SignatureVerifier(SECRET, clock=FixedClock())
    timestamp = str(NOW)
    forged = sign("another-secret", timestamp, BODY)
    assert not sdk.is_valid(body=BODY, timestamp=timestamp, signature=forged)
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, timestamp, BODY, forged, now=NOW)


def test_tampered_body_is_refused() -> None:
    signature = sign(SECRET, str(NOW), BODY)
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, str(NOW), BODY.replace(b"roadrunner", b"coyote"), signature, now=NOW)


def test_signature_for_another_timestamp_is_refused() -> None:
    signature = sign(SECRET, str(NOW - 1), BODY)
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, str(NOW), BODY, signature, now=NOW)


@pytest.mark.parametrize(
    ("timestamp", "signature"), [(None, "v0=00"), (str(NOW), None), (None, None)]
)
def test_missing_headers_are_refused(timestamp: str | None, signature: str | None) -> None:
    with pytest.raises(SignatureError, match="missing"):
        verify(SECRET, timestamp, BODY, signature, now=NOW)


@pytest.mark.parametrize("age", [301, -301, 10_000_000])
def test_stale_or_future_timestamp_is_refused_even_when_signed(age: int) -> None:
    timestamp = str(NOW - age)
    with pytest.raises(SignatureError, match="from now"):
        verify(SECRET, timestamp, BODY, sign(SECRET, timestamp, BODY), now=NOW)


@pytest.mark.parametrize("age", [300, -300, 0])
def test_timestamp_within_five_minutes_either_way_passes(age: int) -> None:
    timestamp = str(NOW - age)
    verify(SECRET, timestamp, BODY, sign(SECRET, timestamp, BODY), now=NOW)


@pytest.mark.parametrize(
    "timestamp",
    ["", "abc", "1.5e9", f"{NOW}.0", f" {NOW}", f"{NOW}\n", "-1", "1_531_420_618", "١٢٣"],
)
def test_non_integer_timestamp_is_refused_even_when_signed(timestamp: str) -> None:
    with pytest.raises(SignatureError, match="not an integer"):
        verify(SECRET, timestamp, BODY, sign(SECRET, timestamp, BODY), now=NOW)


@pytest.mark.parametrize("signature", ["", "v0=", "v1=abc", "v0=é" + "0" * 62, "\udcff"])
def test_malformed_signature_is_refused_without_crashing(signature: str) -> None:
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, str(NOW), BODY, signature, now=NOW)


def test_empty_signing_secret_refuses_even_a_matching_signature() -> None:
    with pytest.raises(SignatureError, match="no Slack signing secret"):
        verify("", str(NOW), BODY, sign("", str(NOW), BODY), now=NOW)


def test_default_clock_is_the_current_time() -> None:
    old = str(NOW)  # 2018: far outside the window today
    with pytest.raises(SignatureError, match="from now"):
        verify(SECRET, old, BODY, sign(SECRET, old, BODY))


def test_error_never_names_the_secret() -> None:
    with pytest.raises(SignatureError) as caught:
        verify(SECRET, str(NOW), BODY, "v0=bad", now=NOW)
    assert SECRET not in str(caught.value)
    assert caught.value.reason == str(caught.value)
