"""Batch agents on librdkafka: consume a batch, hand it to its handler, make its effects hold, commit.

The busy agents (:mod:`streams.worker.stages`) run here, each on its own confluent-kafka
consumer, rather than on Faust's, whose per-record cost was most of the worker's core
(docs/architecture.md has the measurements); the Faust app hosts them (:mod:`streams.worker.app`)
and runs the low-volume agents (officers' decisions) as Faust agents.

Each :class:`BatchAgent` is one member of its own consumer group (``<app id>-<agent>``):

1. ``consume`` up to ``size`` records, or what came within ``within`` seconds;
2. ``handler.process(records)`` computes the batch's :class:`~streams.worker.effects.Effects`;
3. :func:`~streams.worker.effects.perform` makes them hold (sends, rows, state, record of processing);
4. then, and only then, the batch's offsets are committed (synchronously).

So a committed offset never runs ahead of ClickHouse, Kafka or the state, and a crash
anywhere replays from the last commit into the same rows (idempotent by event id).
librdkafka hands a partition's records over in offset order, skips none and refetches
from the committed offset after every assignment, which is what Faust's consumer needed
three patches for. Partitions move with the cooperative-sticky assignor: a rebalance
revokes only the partitions that move, and the handler and tables forget exactly those
(their state is read back from Kafka by whoever gets them). Assignment callbacks run
inside ``consume``, never while the handler is running. An error rises out of :meth:`BatchAgent.run`
uncommitted; the app decides what the worker does (:func:`streams.worker.app.stop`).

A worker never reads more than it can hold: the batch is at most ``size`` records and
librdkafka prefetches at most ``queued.max.messages.kbytes`` per consumer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException, Message, TopicPartition

from agents.audit import offsets
from agents.dead_letters import Source
from streams import clients
from streams.settings import Settings
from streams.topics import Role
from streams.worker.effects import Effects, Sender, StateTable, Writer, perform
from streams.worker.lanes import Lane

log = logging.getLogger("lintas.runtime")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record as a handler reads it (what Faust calls the event's message)."""

    topic: str
    partition: int
    offset: int
    timestamp: float  # seconds since the epoch (the record's CreateTime)
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, str | bytes | None], ...] = ()

    @classmethod
    def of(cls, msg: Message) -> Record:
        """A consumed confluent-kafka message."""
        _, ms = msg.timestamp()
        return cls(msg.topic() or "", msg.partition() or 0, msg.offset() or 0, ms / 1000.0, msg.key(), msg.value(),
                   tuple(msg.headers() or ()))  # type: ignore[arg-type]  # a list of pairs when consumed


def source_of(record: Record) -> Source:
    """Where a record sits in Kafka (what a row or a dead letter names as its source)."""
    return Source(record.topic, record.partition, record.offset, int(record.timestamp * 1000))


def batch_source(records: list[Record]) -> str:
    """Where a batch sits in Kafka, for its record of processing: ``topic:p0:10-42,p3:7-7``."""
    return f"{records[0].topic}:" + offsets([(r.partition, r.offset) for r in records])


class BatchHandler(Protocol):
    """What a batch agent calls: one batch in, what it caused out (nothing sent or written yet)."""

    async def process(self, records: list[Record]) -> Effects:
        """Compute one batch's effects."""

    def revoked(self, partitions: set[int]) -> None:
        """Partitions of the agent's topic that moved away: forget what is held for them."""


@dataclass(frozen=True)
class LagRow:
    """How far one agent's partition is behind its topic's end, for ``consumer_lag``."""

    agent: str
    topic: str
    partition: int
    position: int
    end: int

    def row(self, member: str, now: datetime) -> dict[str, Any]:
        """The ``consumer_lag`` row."""
        return {"agent": self.agent, "topic": self.topic, "partition": self.partition, "member": member,
                "position": self.position, "end_offset": self.end, "lag": max(0, self.end - self.position),
                "measured_at": now}


class Clock:
    """Where an agent's time goes (waiting for records, handling, making it hold, committing), logged now and then.

    Making effects hold includes waiting for Kafka's acknowledgements and for ClickHouse (both said
    apart); a busy agent shows little "waiting for records", a starved one much.
    """

    def __init__(self, name: str, sender: Sender, lane: Lane, every_s: float) -> None:
        """Log at most every ``every_s`` seconds."""
        self.name, self.sender, self.lane, self.every_s = name, sender, lane, every_s
        self.spent: dict[str, float] = {}
        self.records = 0
        self.since = time.monotonic()
        self._acked, self._io = sender.waited, lane.waited

    async def timed(self, phase: str, work: Awaitable[T]) -> T:
        """Await ``work``, adding its time to ``phase``."""
        t0 = time.monotonic()
        try:
            return await work
        finally:
            self.spent[phase] = self.spent.get(phase, 0.0) + time.monotonic() - t0

    def report(self) -> None:
        """Log and restart the counts, if it is time."""
        span = time.monotonic() - self.since
        if span < self.every_s:
            return
        if self.records:
            acked, io = self.sender.waited - self._acked, self.lane.waited - self._io
            parts = ", ".join(f"{phase} {s:.1f}s" for phase, s in self.spent.items())
            log.info("%s: %d record(s) in %.0fs (%.0f/s): %s (waiting on Kafka's acknowledgements %.1fs, on "
                     "ClickHouse and the registry %.1fs)", self.name, self.records, span, self.records / span, parts,
                     acked, io)
        self.spent, self.records, self.since = {}, 0, time.monotonic()
        self._acked, self._io = self.sender.waited, self.lane.waited


def consumer_config(settings: Settings, group: str) -> dict[str, Any]:
    """A batch agent's consumer: its own group, commits only by the agent, bounded prefetch, sticky partitions."""
    return {
        "group.id": group, "enable.auto.commit": False, "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest", "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": int(settings.worker_session_timeout_s * 1000), "heartbeat.interval.ms": 1000,
        "max.poll.interval.ms": int(settings.worker_max_batch_seconds * 1000),
        "queued.max.messages.kbytes": settings.worker_prefetch_kbytes, "fetch.wait.max.ms": 50,
        "topic.metadata.refresh.interval.ms": 10_000,
    }


class BatchAgent:
    """One agent: a consumer of one topic in the agent's own group, its handler, its producer, lane and tables."""

    def __init__(self, name: str, group: str, topic: str, handler: BatchHandler, sender: Sender, lane: Lane,
                 write_rows: Writer, settings: Settings, *, size: int, within: float,
                 tables: Sequence[StateTable] = (), lag: Callable[[list[LagRow]], Any] | None = None) -> None:
        """An agent reading ``topic`` in ``group``; rows go through ``write_rows`` on ``lane``.

        ``lag`` is called (awaited if it returns an awaitable) with the agent's lag every few seconds.
        """
        self.name, self.group, self.topic, self.handler, self.sender = name, group, topic, handler, sender
        self.lane, self.write_rows = lane, write_rows
        self.settings, self.size, self.within, self.tables, self.lag = settings, size, within, tables, lag
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"consume-{name}")
        self._consumer: Consumer | None = None
        self.assigned: set[int] = set()
        self.batches = self.records = 0
        self._lag_at = 0.0
        # offsets done but not committed yet (a commit refused while the group rebalanced), by partition
        self._pending: dict[int, int] = {}

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned |= {tp.partition for tp in partitions}
        log.info("%s: assigned %s partition(s) %s (now %s)", self.name, self.topic,
                 sorted(tp.partition for tp in partitions), sorted(self.assigned))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition], how: str = "revoked") -> None:
        gone = {tp.partition for tp in partitions}
        self.assigned -= gone
        for p in gone:  # its next owner reads from the last commit again
            self._pending.pop(p, None)
        self.handler.revoked(gone)
        for table in self.tables:
            table.revoked(gone)
        log.info("%s: %s %s partition(s) %s (now %s)", self.name, how, self.topic, sorted(gone),
                 sorted(self.assigned))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._on_revoke(consumer, partitions, "lost")

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume, handle, perform, commit, until ``stop`` is set (then leave the group cleanly)."""
        config = consumer_config(self.settings, self.group)
        consumer = Consumer(clients.kafka_config(self.settings, Role.WORKER, **config))
        self._consumer = consumer
        consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                           on_lost=self._on_lost)
        clock = Clock(self.name, self.sender, self.lane, self.settings.worker_stats_seconds)
        try:
            while not stop.is_set():
                messages = await clock.timed("waiting for records", self._call(consumer.consume, self.size,
                                                                                 self.within))
                records = self._records(messages)
                if records:
                    effects = await clock.timed("handling", self.handler.process(records))
                    await clock.timed("making it hold", perform(effects, self.sender, self.lane, self.write_rows,
                                                                self.tables))
                    await clock.timed("committing", self._commit(consumer, records))
                    self.batches += 1
                    self.records += len(records)
                    clock.records += len(records)
                elif self._pending:  # a batch done while the group rebalanced: commit it now it has settled
                    await self._commit(consumer, [])
                await self._report_lag(consumer)
                clock.report()
        finally:
            await self._call(consumer.close)  # leave the group now: its partitions move at once
            self._consumer = None

    def _records(self, messages: list[Message]) -> list[Record]:
        records = []
        for msg in messages:
            err = msg.error()
            if err is None:
                records.append(Record.of(msg))
            elif err.code() != KafkaError._PARTITION_EOF:
                if err.fatal():
                    raise KafkaException(err)
                log.warning("%s: consumer error: %s", self.name, err.str())
        return records

    async def _commit(self, consumer: Consumer, records: list[Record]) -> None:
        """Commit past ``records`` (and anything done earlier whose commit was refused), for partitions still ours.

        A commit refused because the group was rebalancing is kept and tried again after the next
        consume (where the rebalance completes): a partition that stayed ours keeps its position,
        so nobody would read that batch again and its lag would never fall to zero. A partition
        that moved is dropped (on revoke) and its new owner reads from the last commit.
        """
        for r in records:
            self._pending[r.partition] = max(self._pending.get(r.partition, 0), r.offset + 1)
        offsets = [TopicPartition(self.topic, p, o) for p, o in sorted(self._pending.items())]
        if not offsets:
            return
        try:
            await self._call(lambda: consumer.commit(offsets=offsets, asynchronous=False))
        except KafkaException as exc:
            log.warning("%s: commit of %s refused (%s); tried again once the group has settled",
                        self.name, offsets, exc.args[0].str() if exc.args else exc)
            return
        for tp in offsets:
            if self._pending.get(tp.partition) == tp.offset:
                del self._pending[tp.partition]

    async def _report_lag(self, consumer: Consumer) -> None:
        if self.lag is None or time.monotonic() - self._lag_at < self.settings.worker_lag_seconds:
            return
        self._lag_at = time.monotonic()
        parts = [TopicPartition(self.topic, p) for p in sorted(self.assigned)]
        if not parts:
            return
        rows = []
        for tp in consumer.position(parts):
            _, end = consumer.get_watermark_offsets(tp, cached=True)
            if end is None or end < 0:
                continue
            position = tp.offset if tp.offset != OFFSET_INVALID and tp.offset >= 0 else end
            rows.append(LagRow(self.name, self.topic, tp.partition, position, end))
        if rows:
            result = self.lag(rows)
            if asyncio.iscoroutine(result):
                await result

