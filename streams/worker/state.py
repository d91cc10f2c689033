"""Keyed agent state on a compacted changelog topic: objects in memory, bytes in Kafka once per key per batch.

What a Faust table did for the rule and link agents, without its per-write costs: a
table holds each key's state as the object the pure functions work on (a
:class:`~agents.trafficking.state.KeyState`, a :class:`~agents.links.LinkState`), so a
fact reads and updates it in place instead of parsing and writing JSON; :meth:`write`
queues each key changed by the batch once, to the changelog partition its key hashes
to (murmur2, like the records the agent reads), and the agent commits its offsets only
after Kafka has them. A partition's state is read back from its changelog the first
time a key of it is asked for after the partition was assigned, and forgotten when the
partition moves away (whoever gets it reads it back). So a kill -9 loses nothing the
committed offsets depend on, and a fact replayed onto a state that already holds it
changes nothing (the rules recognise it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from confluent_kafka import murmur2

log = logging.getLogger("lintas.state")
T = TypeVar("T")
Reader = Callable[[str, int], Iterable[tuple[bytes | None, bytes | None]]]  # (topic, partition) → (key, value)s


class ChangelogTable(Generic[T]):
    """One agent's keyed state, partitioned like the agent's topic, backed by a compacted changelog."""

    def __init__(self, name: str, topic: str, partitions: int, decode: Callable[[bytes | None], T | None],
                 encode: Callable[[T], bytes], send: Callable[..., None], read: Reader) -> None:
        """A table; ``decode(None)``: a key's state when it has none; ``send``/``read``: to and from its changelog."""
        self.name, self.topic, self.partitions = name, topic, partitions
        self.decode, self.encode, self.send = decode, encode, send
        self._read = read
        self._loaded: dict[int, dict[bytes, T]] = {}
        self._dirty: dict[bytes, T | None] = {}

    def partition_of(self, key: bytes) -> int:
        """The partition a key's records (and so its state) live on."""
        return int(murmur2(key, self.partitions))

    def _partition(self, number: int) -> dict[bytes, T]:
        held = self._loaded.get(number)
        if held is None:
            started = time.monotonic()
            latest: dict[bytes, bytes] = {}
            for key, value in self._read(self.topic, number):
                if key is None:
                    continue
                if value is None:
                    latest.pop(key, None)
                else:
                    latest[key] = value
            held = {}
            for key, value in latest.items():
                state = self.decode(value)
                if state is not None:
                    held[key] = state
            self._loaded[number] = held
            log.info("%s partition %d read back: %d key(s) in %.1fs", self.name, number, len(held),
                     time.monotonic() - started)
        return held

    def get(self, key: bytes) -> T | None:
        """The key's state (the object itself: change it in place, then :meth:`put` it), or ``decode(None)``."""
        held = self._partition(self.partition_of(key))
        if key in held:
            return held[key]
        return self.decode(None)

    def put(self, key: bytes, state: T | None) -> None:
        """The key's new state (``None``: delete it, a tombstone on the changelog)."""
        held = self._partition(self.partition_of(key))
        if state is None:
            held.pop(key, None)
        else:
            held[key] = state
        self._dirty[key] = state

    def __contains__(self, key: object) -> bool:
        """Whether the key has a state."""
        return isinstance(key, bytes) and key in self._partition(self.partition_of(key))

    def write(self) -> int:
        """Queue every key changed since the last write, once, to its changelog partition; how many."""
        dirty, self._dirty = self._dirty, {}
        for key, state in dirty.items():
            self.send(self.topic, None if state is None else self.encode(state), key, self.partition_of(key))
        return len(dirty)

    def revoked(self, partitions: set[int]) -> None:
        """Forget the state of partitions that moved away, and anything of theirs not yet written."""
        for number in partitions:
            self._loaded.pop(number, None)
        self._dirty = {k: v for k, v in self._dirty.items() if self.partition_of(k) not in partitions}

