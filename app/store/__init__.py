"""Durable state: the Store Protocol (base.py) and its backends, chosen by STORE_URL's scheme."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

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
from app.store.postgres import PostgresStore
from app.store.sqlite import SQLiteStore

__all__ = [
    "Accepted",
    "Claim",
    "Delivery",
    "LeaseLostError",
    "MessageRef",
    "PostgresStore",
    "SQLiteStore",
    "Store",
    "StoreError",
    "StoredNotification",
    "backend_name",
    "open_store",
    "shown_url",
]

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
SECRET_PARAMETERS = {"password", "sslpassword"}


async def open_store(store_url: str, pool_size: int = 10) -> Store:
    """The store named by STORE_URL: `sqlite:///path` (the embedded default, one process) or
    `postgresql://user:password@host:port/db?sslmode=...` (shared by any number of replicas)."""
    if store_url.startswith(POSTGRES_SCHEMES):
        return await PostgresStore.open(store_url, pool_size=pool_size)
    return await SQLiteStore.open(store_url)


def backend_name(store_url: str) -> str:
    return "postgresql" if store_url.startswith(POSTGRES_SCHEMES) else "sqlite"


def shown_url(store_url: str) -> str:
    """STORE_URL fit for logs and the console: its password (in the URL or a parameter) masked."""
    if not store_url.startswith(POSTGRES_SCHEMES):
        return store_url
    parts = urlsplit(store_url)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        if ":" in user:
            user = user.split(":", 1)[0] + ":***"
        netloc = f"{user}@{host}"
    query = "&".join(
        f"{name}=***" if name.lower() in SECRET_PARAMETERS else f"{name}={value}"
        for name, _, value in (pair.partition("=") for pair in parts.query.split("&") if pair)
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))
