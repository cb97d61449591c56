"""Durable state: the Store Protocol (base.py) and its backends, chosen by STORE_URL's scheme."""

from __future__ import annotations

from app.store.base import (
    Accepted,
    Claim,
    Delivery,
    LeaseLostError,
    MessageRef,
    Store,
    StoredNotification,
    StoreError,
)
from app.store.sqlite import SQLiteStore

__all__ = [
    "Accepted",
    "Claim",
    "Delivery",
    "LeaseLostError",
    "MessageRef",
    "SQLiteStore",
    "Store",
    "StoreError",
    "StoredNotification",
    "open_store",
]


async def open_store(store_url: str) -> Store:
    """The store named by STORE_URL: `sqlite:///path` (the embedded default)."""
    return await SQLiteStore.open(store_url)
