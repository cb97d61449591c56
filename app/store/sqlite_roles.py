"""The SQLite backend's roles (`Store.hold_role`): a job one process at a time may do, such as
long-polling Telegram's getUpdates, held with a lease on the lease clock."""

from __future__ import annotations

import sqlite3

from app.store.primitives import SQLitePrimitives

# Taken when free, expired, or already ours (then extended); otherwise nothing changes.
HOLD_ROLE = """
INSERT INTO role_leases (name, owner, lease_until) VALUES (?, ?, ?)
ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until
WHERE role_leases.owner = excluded.owner OR role_leases.lease_until < ?
"""


class SQLiteRoles(SQLitePrimitives):
    async def hold_role(self, role: str, owner: str, seconds: float) -> bool:
        now = self._lease_clock()

        def hold(conn: sqlite3.Connection) -> bool:
            return conn.execute(HOLD_ROLE, (role, owner, now + seconds, now)).rowcount == 1

        return await self._tx(hold)

    async def drop_role(self, role: str, owner: str) -> None:
        def drop(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM role_leases WHERE name = ? AND owner = ?", (role, owner))

        await self._tx(drop)
