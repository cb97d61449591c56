"""What a test needs from the machine (root, a tmpfs, network namespaces, PostgreSQL's programs).

A developer's machine may lack one, and the test then skips, saying what is missing. Under
`CI=true` (.ci/run sets it, as most CI services do) it fails instead: CI installs and grants every
one, so a skip there would be a test that silently never ran.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing(reason: str) -> NoReturn:
    """Skip for `reason`, or fail under CI=true."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true: this test must run, not skip: {reason}", pytrace=False)
    pytest.skip(reason)
