"""The PostgreSQL backend's roles (`Store.hold_role`): a job one replica at a time may do, such as
long-polling Telegram's getUpdates (a second poller gets 409 Conflict), held with a lease on the
database server's clock, so a replica that dies hands the role over when its lease runs out."""

# ruff: noqa: S608 (fixed text; values travel as query parameters)

from __future__ import annotations

from app.store.postgres_schema import NOW, text
from app.store.primitives import PostgresPrimitives

# Taken when free, expired, or already ours (then extended); otherwise no row comes back.
HOLD_ROLE = f"""
INSERT INTO role_leases (name, owner, lease_until)
VALUES (%(role)s, %(owner)s, {NOW} + make_interval(secs => %(seconds)s))
ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until
WHERE role_leases.owner = excluded.owner OR role_leases.lease_until < {NOW}
RETURNING 1
"""
DROP_ROLE = "DELETE FROM role_leases WHERE name = %(role)s AND owner = %(owner)s RETURNING 1"


class PostgresRoles(PostgresPrimitives):
    async def hold_role(self, role: str, owner: str, seconds: float) -> bool:
        params = self._params(role=text(role), owner=text(owner), seconds=seconds)
        return bool(await self._fetch(HOLD_ROLE, params))

    async def drop_role(self, role: str, owner: str) -> None:
        await self._fetch(DROP_ROLE, self._params(role=text(role), owner=text(owner)))
