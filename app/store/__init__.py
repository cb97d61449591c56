"""Durable state: the Store Protocol (base.py) and its backends, chosen by STORE_URL's scheme."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.store.base import (
    Accepted,
    Claim,
    DailySpend,
    Delivery,
    DiagnosisJob,
    EditTarget,
    LeaseLostError,
    MessageRef,
    NotificationRecord,
    QueuedDiagnosis,
    Store,
    StoredNotification,
    StoreError,
)
from app.store.urls import POSTGRES_SCHEMES, backend_name, shown_url

if TYPE_CHECKING:
    from app.store.postgres import PostgresStore
    from app.store.sqlite import SQLiteStore

__all__ = [
    "Accepted",
    "Claim",
    "DailySpend",
    "Delivery",
    "DiagnosisJob",
    "EditTarget",
    "LeaseLostError",
    "MessageRef",
    "NotificationRecord",
    "PostgresStore",
    "QueuedDiagnosis",
    "SQLiteStore",
    "Store",
    "StoreError",
    "StoredNotification",
    "backend_name",
    "open_store",
    "shown_url",
]


async def open_store(store_url: str, pool_size: int = 10) -> Store:
    """The store named by STORE_URL: `sqlite:///path` (the embedded default, one process) or
    `postgresql://user:password@host:port/db?sslmode=...` (shared by any number of replicas)."""
    if store_url.startswith(POSTGRES_SCHEMES):
        from app.store.postgres import PostgresStore  # noqa: PLC0415 - psycopg only when used

        return await PostgresStore.open(store_url, pool_size=pool_size)
    from app.store.sqlite import SQLiteStore  # noqa: PLC0415 - sqlite3 only when used

    return await SQLiteStore.open(store_url)


def __getattr__(name: str) -> Any:
    """Each backend on first use: importing psycopg costs a process ~10 MiB, sqlite3 about 1, and
    one whose store is the other backend (or the pipeline's process, served the service's SQLite
    store) never needs it."""
    if name == "PostgresStore":
        from app.store.postgres import PostgresStore  # noqa: PLC0415

        return PostgresStore
    if name == "SQLiteStore":
        from app.store.sqlite import SQLiteStore  # noqa: PLC0415

        return SQLiteStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
