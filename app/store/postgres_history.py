"""The PostgreSQL backend's part of incident memory (`Store.incident_history`, app/memory.py)."""

# ruff: noqa: S608 (fixed text; values travel as query parameters)

from __future__ import annotations

from app.store.history import (
    ALERT_HISTORY_ROWS,
    HISTORY_ROWS,
    AlertEpisode,
    IncidentHistory,
    alert_episodes,
    last_diagnosis,
)
from app.store.postgres_schema import NOW, text
from app.store.primitives import PostgresPrimitives

ENDED = f"""
SELECT extract(epoch FROM opened_at)::float8, extract(epoch FROM ended_at)::float8
FROM incidents
WHERE group_id = %(group)s AND ended_at IS NOT NULL
    AND ended_at >= {NOW} - make_interval(secs => %(within)s)
ORDER BY opened_at
"""
DIAGNOSES = f"""
SELECT d.result, n.enrichment
FROM notifications n LEFT JOIN diagnoses d ON d.notification_id = n.id
WHERE n.group_id = %(group)s AND n.enrichment IS NOT NULL
    AND n.received_at >= {NOW} - make_interval(secs => %(within)s)
ORDER BY n.id DESC LIMIT %(rows)s
"""
FIRINGS = f"""
SELECT started, ended FROM alert_firings
WHERE fingerprint = %(fp)s AND seen_at >= {NOW} - make_interval(secs => %(within)s)
ORDER BY started DESC LIMIT %(rows)s
"""


class PostgresHistory(PostgresPrimitives):
    async def incident_history(self, group_id: str, within_seconds: float) -> IncidentHistory:
        params = self._params(group=text(group_id), within=within_seconds, rows=HISTORY_ROWS)
        ended = await self._fetch(ENDED, params)
        if not ended:  # no past incident: its last diagnosis would not be shown
            return IncidentHistory([])
        diagnoses = await self._fetch(DIAGNOSES, params)
        return IncidentHistory(
            [(float(o), float(e)) for o, e in ended], last_diagnosis(list(diagnoses))
        )

    async def alert_history(self, fingerprint: str, within_seconds: float) -> list[AlertEpisode]:
        params = self._params(fp=text(fingerprint), within=within_seconds, rows=ALERT_HISTORY_ROWS)
        return alert_episodes(await self._fetch(FIRINGS, params))
