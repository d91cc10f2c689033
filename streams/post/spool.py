"""A post's durable outbox: events are accepted to disk first and leave it only once Kafka has them.

SQLite in WAL mode with ``synchronous=FULL``: a batch is accepted when its
transaction commits, and survives a crash of the process or the machine. Rows
are sent in the order they were accepted and deleted when Kafka acknowledges
them; a crash between the acknowledgement and the delete resends a few events,
which their event id makes harmless downstream.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SpooledEvent:
    """One accepted event waiting for Kafka."""

    seq: int
    topic: str
    key: bytes
    contract: str
    payload: bytes


class Spool:
    """The outbox file of one post (or one producer process)."""

    def __init__(self, path: Path) -> None:
        """Open or create the spool file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, "
            "key BLOB NOT NULL, contract TEXT NOT NULL, payload BLOB NOT NULL)"
        )
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()

    def accept(self, events: Iterable[tuple[str, bytes, str, bytes]]) -> int:
        """Durably accept ``(topic, key, contract, avro payload)`` rows in one transaction; returns the count."""
        rows = list(events)
        if not rows:
            return 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT INTO outbox (topic, key, contract, payload) VALUES (?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return len(rows)

    def after(self, seq: int, limit: int) -> list[SpooledEvent]:
        """Up to ``limit`` events accepted after ``seq``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, key, contract, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit),
            ).fetchall()
        return [SpooledEvent(*row) for row in rows]

    def delivered(self, seqs: Sequence[int]) -> None:
        """Forget events Kafka has acknowledged."""
        if not seqs:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])
            self._db.execute("COMMIT")

    def pending(self) -> int:
        """Events accepted and not yet acknowledged."""
        with self._lock:
            (count,) = self._db.execute("SELECT count(*) FROM outbox").fetchone()
        return int(count)
