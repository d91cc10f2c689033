"""``lintas watchlist load | remove``: publish a list file whole, or remove entries, in one Kafka transaction.

``lintas watchlist load FILE --list NAME`` reads and validates the whole file first
(:func:`agents.watchlist.parse_list_file`: a bad row anywhere and nothing is sent),
turns each document number into its operations token, and publishes every entry in
one Kafka transaction: readers (``read_committed``) see all of a load or none of it,
even if the loader dies halfway. ``--replace`` makes the file the whole list: entries
not in it get tombstones in the same transaction. ``lintas watchlist remove`` sends
tombstones. Each list has its own transactional id, so two loaders of one list fence
each other rather than interleave. Workers follow the lists with
:class:`streams.watchlist_replica.Replica`.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import KafkaException

from agents.audit import Processing
from agents.keys import tokeniser
from agents.watchlist import LIST_CLASSES, LISTS, ListRow, WatchList, entries, parse_list_file
from schemas.errors import LintasError
from streams import clients
from streams.keystores import FileKeyring
from streams.ops.privacy import audit
from streams.settings import Settings
from streams.topics import WATCHLIST_TRANSACTIONS, WATCHLISTS, Role, TopicSpec
from streams.watchlist_replica import Replica


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


def live_keys(settings: Settings, topic: TopicSpec) -> set[str]:
    """The document tokens listed now in one list topic."""
    replica = Replica(settings, {"list": topic}, role=Role.WATCHLIST)
    replica.start()
    replica.wait(timeout_s=120)
    replica.stop()
    return {key.hex() for key in replica.tables["list"]}
