"""How the service starts a Python process of its own (the chart renderer, the pipeline)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

CODE_ROOT = str(Path(__file__).resolve().parent.parent)  # the `app` the service itself runs


def module_command(module: str) -> tuple[str, ...]:
    """`python -P -m module`: -P keeps the working directory off sys.path (an `app` there is not
    the service's); child_env() puts the service's own code first instead."""
    return (sys.executable, "-P", "-m", module)


def child_env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [CODE_ROOT, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}
