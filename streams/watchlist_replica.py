"""Every worker's own copy of the watchlists: a group-less reader of each list topic, from the start, kept current.

:class:`Replica` is what a Faust global table would be, written out: a consumer
outside any group that reads every partition of every list topic from the start,
keeps ``token → entry`` in memory and goes on applying updates as they arrive, so a
list change reaches every worker within about a second, without a restart. Why not
faust's GlobalTable: a new worker held a million entries after 148.6 s that way (its
recovery applies them one by one while every agent waits) against 7.8 s here
(``python -m bench.watchlist_globaltable``); a GlobalTable over our own ``watchlist.*``
topic as its changelog hung the group assignment; and faust warns that several
instances can loop in recovery (faust-streaming #283). This reader has no group, so
rebalances of the pipeline never touch it. The worker checks documents against it;
``lintas watchlist load --replace`` and ``show`` read lists with it too.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from agents.watchlist import Entry
from schemas.errors import LintasError
from streams import clients
from streams.settings import Settings
from streams.topics import WATCHLIST_READER_GROUP, WATCHLISTS, Role, TopicSpec

log = logging.getLogger("lintas.watchlist")
SHARED_VALUES = 100_000  # distinct entry values kept once each; beyond that, each entry keeps its own copy


def _consumer(settings: Settings, role: Role) -> Consumer:
    # No group membership (assign, never subscribe) and no commits: every reader reads every list whole.
    return clients.consumer(settings, role, WATCHLIST_READER_GROUP, **{
        "enable.partition.eof": True, "isolation.level": "read_committed", "fetch.max.bytes": 52_428_800})



class Replica:
    """Every worker's own copy of the lists: ``token → entry bytes`` per list, kept current by a reader thread."""

    def __init__(self, settings: Settings, topics: dict[str, TopicSpec] | None = None,
                 role: Role = Role.WORKER) -> None:
        """Nothing is read until :meth:`start`."""
        self.settings, self.role = settings, role
        self.topics = topics if topics is not None else dict(WATCHLISTS)
        self.tables: dict[str, dict[bytes, bytes]] = {name: {} for name in self.topics}
        self.ready = threading.Event()
        self.applied = 0
        self.bad_keys = 0
        # Entries of one load mostly share their bytes (same list, reason, source, load, validity): keep one copy.
        self._shared: dict[bytes, bytes] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending = {(t.name, p) for t in self.topics.values() for p in range(t.partitions)}

    def start(self) -> None:
        """Start reading (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="watchlist-replica", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop reading."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def wait(self, timeout_s: float) -> None:
        """Block until every list has been read to its end once."""
        if not self.ready.wait(timeout_s):
            raise LintasError(f"watchlists not read to their end in {timeout_s:.0f}s: {self.waiting()}")

    def waiting(self) -> str:
        """The list partitions not read to their end yet (for a warning)."""
        return ", ".join(f"{t}/{p}" for t, p in sorted(self._pending)) or "none"

    def lookup(self, token: str) -> list[Entry]:
        """Every list's entry for this document token (usually none)."""
        try:
            key = bytes.fromhex(token)
        except ValueError:
            return []
        return [Entry.from_bytes(value) for table in self.tables.values() if (value := table.get(key)) is not None]

    def sizes(self) -> dict[str, int]:
        """Entries per list."""
        return {name: len(table) for name, table in self.tables.items()}

    def _run(self) -> None:
        names = {t.name: name for name, t in self.topics.items()}
        consumer = _consumer(self.settings, self.role)
        consumer.assign([TopicPartition(t.name, p, OFFSET_BEGINNING) for t in self.topics.values()
                         for p in range(t.partitions)])
        warned = time.monotonic()
        try:
            while not self._stop.is_set():
                for msg in consumer.consume(10_000, timeout=0.2):
                    self._apply(msg, names)
                if not self.ready.is_set() and time.monotonic() - warned > 10:
                    log.warning("still reading watchlists; not at their end: %s (does the topic exist, and may the "
                                "%s role read it? `lintas stack up` creates both)", self.waiting(), self.role.value)
                    warned = time.monotonic()
        finally:
            consumer.close()

    def _apply(self, msg: Any, names: dict[str, str]) -> None:
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                self._pending.discard((msg.topic(), msg.partition()))
                if not self._pending and not self.ready.is_set():
                    log.info("watchlists read: %s", ", ".join(f"{n} {c}" for n, c in self.sizes().items()))
                    self.ready.set()
            else:
                log.warning("watchlist reader: %s", err.str())
            return
        try:
            key = bytes.fromhex(msg.key().decode())
        except (AttributeError, UnicodeDecodeError, ValueError):
            self.bad_keys += 1  # not written by `lintas watchlist`: ignored, counted
            return
        table = self.tables[names[msg.topic()]]
        value = msg.value()
        if value is None:
            table.pop(key, None)
        elif len(self._shared) < SHARED_VALUES:
            table[key] = self._shared.setdefault(value, value)
        else:
            table[key] = value
        self.applied += 1
