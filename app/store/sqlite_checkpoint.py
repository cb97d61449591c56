"""WAL checkpoints off the commit path: a thread and a connection of their own.

By default SQLite checkpoints inside the COMMIT that pushes the write-ahead log past 1,000 pages,
so every few hundred notifications one commit (and every webhook answer batched with it) waits
30-70 ms for the database file's fsync. Here the store's connection never checkpoints
(`wal_autocheckpoint=0`); this thread copies the log into the database every second with a PASSIVE
checkpoint, which takes no lock a writer waits on. Readers and writers keep going meanwhile; the log
only grows if this thread stops, and `journal_size_limit` trims it once it is checkpointed.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger(__name__)

CHECKPOINT_EVERY_SECONDS = 1.0


class Checkpointer:
    def __init__(self, path: str, every: float = CHECKPOINT_EVERY_SECONDS) -> None:
        self._path = path
        self._every = every
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="store-checkpoint", daemon=True)
        self.checkpoints = 0  # completed, for tests

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        failing = False
        while not self._stopping.wait(self._every):
            try:
                if conn is None:
                    conn = sqlite3.connect(self._path, isolation_level=None, timeout=0)
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                self.checkpoints += 1
                failing = False
            except sqlite3.Error as exc:  # a full or vanished disk: the store reports it itself
                if not failing:
                    log.warning("WAL checkpoint failed, retrying every %gs: %s", self._every, exc)
                failing = True
                if conn is not None:
                    conn.close()
                    conn = None
        if conn is not None:
            conn.close()
