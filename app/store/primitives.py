"""What the backends' record mixins (deliveries, diagnoses) use of their store class, declared once
per backend: SQLiteStore and PostgresStore define these; the mixins only call them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from app.store.base import Claim

# psycopg (sqlite3) is loaded only by a process whose store is PostgreSQL (SQLite)
if TYPE_CHECKING:
    import sqlite3

    from app.store.postgres_db import Conn, Database

T = TypeVar("T")


class SQLitePrimitives:
    _clock: Callable[[], float]
    _lease_clock: Callable[[], float]

    async def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def _held(self, claim: Claim, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def _fetch(
        self, sql: str, params: Sequence[object] | Mapping[str, object] = ()
    ) -> list[Any]:
        raise NotImplementedError


class PostgresPrimitives:
    _db: Database

    async def _held(self, claim: Claim, fn: Callable[[Conn], Awaitable[T]]) -> T:
        raise NotImplementedError

    async def _write_held(self, claim: Claim, sql: str, params: Mapping[str, object]) -> None:
        raise NotImplementedError

    def _params(self, **values: object) -> dict[str, object]:
        raise NotImplementedError

    async def _fetch(self, sql: str, params: Mapping[str, object]) -> list[tuple[Any, ...]]:
        raise NotImplementedError
