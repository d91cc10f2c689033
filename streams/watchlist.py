"""Watchlists on Kafka: publish a list file whole, remove entries, and keep every worker's copy current.

``lintas watchlist load FILE --list NAME`` reads and validates the whole file first
(:func:`agents.watchlist.parse_list_file`: a bad row anywhere and nothing is sent),
turns each document number into its operations token, and publishes every entry in
one Kafka transaction: readers (``read_committed``) see all of a load or none of it,
even if the loader dies halfway. ``--replace`` makes the file the whole list: entries
not in it get tombstones in the same transaction. ``lintas watchlist remove`` sends
tombstones. Each list has its own transactional id, so two loaders of one list fence
each other rather than interleave.

:class:`Replica` is what a Faust global table would be, written out: a consumer
outside any group that reads every partition of every list topic from the start,
keeps ``token → entry`` in memory and goes on applying updates as they arrive, so a
list change reaches every worker within about a second, without a restart. Why not
faust's GlobalTable: a new worker held a million entries after 148.6 s that way (its
recovery applies them one by one while every agent waits) against 7.8 s here
(``python -m bench.watchlist_globaltable``); a GlobalTable over our own ``watchlist.*``
topic as its changelog hung the group assignment; and faust warns that several
instances can loop in recovery (faust-streaming #283). This reader has no group, so
rebalances of the pipeline never touch it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from agents.audit import Processing
from agents.keys import FileKeyring, tokeniser
from agents.watchlist import LISTS, Entry, ListRow, WatchList, entries, parse_list_file
from schemas.errors import LintasError
from streams import clients
from streams.privacy_ops import audit
from streams.settings import Settings
from streams.topics import WATCHLIST_READER_GROUP, WATCHLIST_TRANSACTIONS, WATCHLISTS, Role, TopicSpec

log = logging.getLogger("lintas.watchlist")
LIST_CLASSES = ("CRIME_RECORD", "PSEUDONYMOUS")  # a listing is crime-record data about the document's holder
SHARED_VALUES = 100_000  # distinct entry values kept once each; beyond that, each entry keeps its own copy


class UnknownList(LintasError):
    """No list of that name."""

    code = "watchlist_unknown"


class PublishFailed(LintasError):
    """Kafka did not take the load's transaction; nothing of it is visible."""

    code = "watchlist_publish_failed"


@dataclass(frozen=True)
class Published:
    """What one load or removal did (counts and ids only)."""

    list: str
    load_id: str
    published: int
    removed: int
    key_id: str


def watchlist(name: str) -> tuple[WatchList, TopicSpec]:
    """The list of that name and its topic."""
    if name not in LISTS:
        raise UnknownList(f"no watchlist {name!r}; lists: {', '.join(sorted(LISTS))}")
    return LISTS[name], WATCHLISTS[name]


def load(settings: Settings, path: Path, name: str, replace: bool = False) -> Published:
    """Validate the file whole, then publish its entries (and, with ``replace``, remove the rest) in one transaction."""
    wl, topic = watchlist(name)
    text = path.read_text(encoding="utf-8-sig")
    rows = parse_list_file(text, wl)  # raises before anything is sent
    tok = tokeniser(FileKeyring(settings.keyring_path), "operations")
    load_id = str(uuid.uuid4())
    records = entries(rows, wl, tok, datetime.now(UTC), load_id)
    stale = sorted(live_keys(settings, topic) - {key for key, _ in records}) if replace else []
    _transaction(settings, topic, [(key.encode(), value) for key, value in records]
                 + [(key.encode(), None) for key in stale], wl.name)
    source = f"file:sha256:{hashlib.sha256(text.encode()).hexdigest()[:16]}"
    done = [Processing("watchlist", "store", "operations", LIST_CLASSES, len(records), source, topic.name,
                       tok.key_id, detail=f"load {load_id}")]
    if stale:
        done.append(Processing("watchlist", "delete", "operations", LIST_CLASSES, len(stale), source, topic.name,
                               tok.key_id, detail=f"load {load_id} --replace: entries not in the file"))
    audit(settings, done)
    return Published(wl.name, load_id, len(records), len(stale), tok.key_id)


def remove(settings: Settings, name: str, rows: Iterable[ListRow]) -> Published:
    """Tombstones for these documents' entries, in one transaction."""
    wl, topic = watchlist(name)
    tok = tokeniser(FileKeyring(settings.keyring_path), "operations")
    keys = sorted({row.token(tok) for row in rows})
    _transaction(settings, topic, [(key.encode(), None) for key in keys], wl.name)
    load_id = str(uuid.uuid4())
    audit(settings, [Processing("watchlist", "delete", "operations", LIST_CLASSES, len(keys), "request",
                                topic.name, tok.key_id, detail=f"removal {load_id}")])
    return Published(wl.name, load_id, 0, len(keys), tok.key_id)


def removal_rows(path: Path | None, document: str | None, name: str) -> list[ListRow]:
    """The documents to remove: a file (``issuing_state,number``) or one ``ISS:NUMBER``."""
    wl, _ = watchlist(name)
    if path is not None:
        return parse_list_file(path.read_text(encoding="utf-8-sig"), wl, removal=True)
    state, _, number = (document or "").partition(":")
    return parse_list_file(f"issuing_state,number\n{state},{number}\n", wl, removal=True)


def _transaction(settings: Settings, topic: TopicSpec, records: list[tuple[bytes, bytes | None]], name: str) -> None:
    producer = clients.producer(settings, Role.WATCHLIST, **{
        "transactional.id": f"{WATCHLIST_TRANSACTIONS}{name}", "transaction.timeout.ms": 600_000, "linger.ms": 50,
        "batch.num.messages": 10_000, "queue.buffering.max.messages": 2_000_000})
    try:
        producer.init_transactions(60)
        producer.begin_transaction()
        for key, value in records:
            while True:
                try:
                    producer.produce(topic.name, key=key, value=value)
                    break
                except BufferError:  # the local queue is full: let it drain
                    producer.poll(0.1)
        producer.commit_transaction(600)
    except KafkaException as err:
        try:
            producer.abort_transaction(60)
        except KafkaException:
            pass  # the broker aborts it at the transaction timeout
        raise PublishFailed(f"{topic.name}: the transaction was not committed ({err.args[0].str()}); nothing of "
                            "this load is visible; run it again") from err


def _consumer(settings: Settings, role: Role) -> Consumer:
    # No group membership (assign, never subscribe) and no commits: every reader reads every list whole.
    return clients.consumer(settings, role, WATCHLIST_READER_GROUP, **{
        "enable.partition.eof": True, "isolation.level": "read_committed", "fetch.max.bytes": 52_428_800})


def live_keys(settings: Settings, topic: TopicSpec) -> set[str]:
    """The document tokens listed now in one list topic."""
    replica = Replica(settings, {"list": topic}, role=Role.WATCHLIST)
    replica.start()
    replica.wait(timeout_s=120)
    replica.stop()
    return {key.hex() for key in replica.tables["list"]}


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
