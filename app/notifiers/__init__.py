"""Chat channels. Each is one module implementing the `Notifier` Protocol of `base.py`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.notifiers.base import Notifier
from app.notifiers.console import ConsoleNotifier

if TYPE_CHECKING:
    from app.config import Settings


def build_notifiers(settings: Settings) -> list[Notifier]:
    """Every configured channel, built here and only here; the console when none is configured."""
    notifiers: list[Notifier] = []
    return notifiers or [ConsoleNotifier()]
