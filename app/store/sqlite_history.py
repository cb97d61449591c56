"""The SQLite backend's part of incident memory (`Store.incident_history`, app/memory.py)."""

from __future__ import annotations

from app.store.history import (
    ALERT_HISTORY_ROWS,
    HISTORY_ROWS,
    AlertEpisode,
    IncidentHistory,
    alert_episodes,
    last_diagnosis,
)
from app.store.primitives import SQLitePrimitives


class SQLiteHistory(SQLitePrimitives):
    async def incident_history(self, group_id: str, within_seconds: float) -> IncidentHistory:
        since = self._clock() - within_seconds
        ended = await self._fetch(
            "SELECT opened_at, ended_at FROM incidents"
            " WHERE group_id = ? AND ended_at IS NOT NULL AND ended_at >= ? ORDER BY opened_at",
            (group_id, since),
        )
        if not ended:  # no past incident: its last diagnosis would not be shown
            return IncidentHistory([])
        diagnoses = await self._fetch(
            "SELECT d.result, n.enrichment FROM notifications n"
            " LEFT JOIN diagnoses d ON d.notification_id = n.id"
            " WHERE n.group_id = ? AND n.enrichment IS NOT NULL AND n.received_at >= ?"
            " ORDER BY n.id DESC LIMIT ?",
            (group_id, since, HISTORY_ROWS),
        )
        return IncidentHistory(
            [(float(o), float(e)) for o, e in ended], last_diagnosis(list(diagnoses))
        )

    async def alert_history(self, fingerprint: str, within_seconds: float) -> list[AlertEpisode]:
        rows = await self._fetch(
            "SELECT started, ended FROM alert_firings WHERE fingerprint = ? AND seen_at >= ?"
            " ORDER BY started DESC LIMIT ?",
            (fingerprint, self._clock() - within_seconds, ALERT_HISTORY_ROWS),
        )
        return alert_episodes(rows)
