"""A test missing a capability of the machine skips on a developer's machine, fails on CI."""

import pytest

from tests.capabilities import missing


def test_a_missing_capability_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no tmpfs"):
        missing("no tmpfs")


def test_a_missing_capability_fails_under_ci_true(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="must run, not skip: no tmpfs"):
        missing("no tmpfs")
