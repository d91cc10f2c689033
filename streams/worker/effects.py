"""What a handler returns, and the one order in which the runtime makes it hold: send, write, acknowledge, state.

A handler computes; it never sends, writes or commits. It returns :class:`Effects`: the Kafka
records its batch produced, the ClickHouse rows by table, the records that say the batch is
done (a gallery shard's identity records), and the batch's record of processing. :func:`perform`
makes them hold in this order, for every agent (as snuba composes transform → batch → write →
commit once, in its strategy factory):

1. **send**: queue every record on the agent's one producer;
2. **write**: the rows into ClickHouse, table by table, on the agent's I/O thread, while
3. **acknowledge**: Kafka acknowledges the sends; both must hold before anything else;
4. **state**: the done-records and every changed key of the agent's state tables, acknowledged,
   with the record of processing on its topic;
5. **record**: the record of processing into ``processing_log``.

The caller commits the batch's offsets only after :func:`perform` returns. State comes after
the sends and rows because it is what a replay trusts: a shard that finds an identity's record
at a version skips the commands up to it, and a rule state that holds a fact ignores it again.
Were state written first and the worker killed before its rows, the replay would skip the
batch and its rows would never be written. A failure raises (:class:`~streams.worker.sender.
DeliveryFailed`, :class:`~streams.worker.sink.SinkRefused`, ...) to the runtime, which stops the
worker without committing; Kafka replays the batch, which the rows' event ids and the state make
harmless.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from agents.audit import Processing
from streams.topics import AUDIT_PROCESSING

Headers = list[tuple[str, bytes]]


@dataclass(slots=True)
class Send:
    """One Kafka record to produce (``value`` None: a tombstone; ``partition`` None: by the key's hash)."""

    topic: str
    value: bytes | None
    key: bytes | None = None
    partition: int | None = None
    headers: Headers | None = None


@dataclass
class Effects:
    """Everything one batch caused, for :func:`perform`."""

    sends: list[Send] = field(default_factory=list)
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    done: list[Send] = field(default_factory=list)  # what says the batch is done: written after sends and rows
    processing: list[Processing] = field(default_factory=list)

    def send(self, topic: str, value: bytes | None, key: bytes | None = None, partition: int | None = None,
             headers: Headers | None = None) -> None:
        """A record to produce."""
        self.sends.append(Send(topic, value, key, partition, headers))

    def write(self, table: str, rows: Sequence[dict[str, Any]]) -> None:
        """Rows to insert into ``table`` (tables are written in the order first named)."""
        if rows:
            self.rows.setdefault(table, []).extend(rows)

    def mark_done(self, topic: str, value: bytes | None, key: bytes | None = None,
                  partition: int | None = None) -> None:
        """A record that says the batch is done; produced only once every send and row holds."""
        self.done.append(Send(topic, value, key, partition))

    def record(self, *entries: Processing, empty: bool = False) -> None:
        """The batch's record of processing (entries without records are left out, unless ``empty``)."""
        self.processing += [e for e in entries if e.records or empty]

    def __iadd__(self, other: Effects) -> Effects:
        """Another handler's effects after these (a handler that calls another's pure part)."""
        self.sends += other.sends
        for table, rows in other.rows.items():
            self.write(table, rows)
        self.done += other.done
        self.processing += other.processing
        return self


class Sender(Protocol):
    """One agent's producer (:class:`~streams.worker.sender.KafkaSender`, or a test's memory)."""

    waited: float  # seconds spent waiting for acknowledgements

    def send(self, topic: str, value: bytes | None, key: bytes | None = None, partition: int | None = None,
             headers: Headers | None = None) -> None:
        """Queue one record."""

    async def flush(self) -> None:
        """Return once Kafka acknowledged every record queued; raise if it refused one."""


class StateTable(Protocol):
    """A changelog-backed table an agent keeps (:class:`~streams.worker.state.ChangelogTable`)."""

    def write(self) -> int:
        """Queue every key changed since the last write to the changelog; how many."""

    def revoked(self, partitions: set[int]) -> None:
        """Forget these partitions' state (read back if they come back)."""


IO = Callable[..., Awaitable[Any]]  # a blocking call on the agent's I/O thread: ``await io(fn, *args)``
Writer = Callable[[str, list[dict[str, Any]]], None]  # inserts one table's rows (ClickHouseSink.write)


async def perform(effects: Effects, sender: Sender, io: IO, write_rows: Writer,
                  tables: Sequence[StateTable] = ()) -> None:
    """Make one batch's effects hold, in the order of this module's doc; return when all of it holds."""
    for s in effects.sends:
        sender.send(s.topic, s.value, s.key, s.partition, s.headers)

    async def rows() -> None:
        for table, batch in effects.rows.items():
            await io(write_rows, table, batch)

    stored = asyncio.ensure_future(rows())
    try:
        await sender.flush()
    finally:
        await stored
    for s in effects.done:
        sender.send(s.topic, s.value, s.key, s.partition, s.headers)
    for table in tables:
        table.write()
    for entry in effects.processing:
        sender.send(AUDIT_PROCESSING.name, entry.to_json())
    await sender.flush()
    if effects.processing:
        await io(write_rows, "processing_log", [e.row() for e in effects.processing])
