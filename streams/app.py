"""The one Faust app of Lintas: every topic it reads or writes, declared once, and its thin agents.

Agents only loop, call the pure functions of :mod:`agents` and send. Each batch
(``take_events``) is acknowledged only after its dead letters are in Kafka and
its rows are in ClickHouse, so committed offsets never run ahead of ClickHouse;
a replay after a crash rewrites the same event ids, which ReplacingMergeTree and
the views' distinct counts absorb.

Run with ``lintas worker`` (or ``faust -A streams.app worker --without-web``).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import faust
from confluent_kafka.schema_registry import SchemaRegistryClient

from agents.ingest import CROSSINGS, LANDINGS, DeadLetter, EventKind, Source, dead_letter_payload, ingest
from agents.pseudonymise import Tokeniser
from schemas.contracts import DEAD_LETTER
from streams.settings import load_settings
from streams.sink import ClickHouseSink
from streams.topics import CROSSING_EVENTS, CROSSING_EVENTS_DLQ, LANDING_EVENTS, LANDING_EVENTS_DLQ, TopicSpec
from streams.wire import RegistryUnavailable, SchemaIds, frame

log = logging.getLogger("lintas.app")
settings = load_settings()

app = faust.App(
    "lintas-pipeline",
    broker=";".join(f"kafka://{hp}" for hp in settings.kafka_bootstrap.split(",")),
    store="memory://",
    value_serializer="raw",
    key_serializer="raw",
    web_enabled=False,
    web_bind="127.0.0.1",
    web_port=settings.worker_web_port,
    consumer_auto_offset_reset="earliest",
    broker_commit_interval=1.0,
    broker_session_timeout=10.0,
    broker_heartbeat_interval=1.0,
    producer_acks=-1,
    topic_disable_leader=True,
)


def _topic(spec: TopicSpec) -> faust.TopicT:
    return app.topic(spec.name, value_type=bytes, key_type=bytes, value_serializer="raw", key_serializer="raw",
                     partitions=spec.partitions)


crossing_events = _topic(CROSSING_EVENTS)
landing_events = _topic(LANDING_EVENTS)
crossing_events_dlq = _topic(CROSSING_EVENTS_DLQ)
landing_events_dlq = _topic(LANDING_EVENTS_DLQ)


class Pipeline:
    """What the agents share: registry cache, tokeniser, sink and the thread the sink runs in."""

    def __init__(self) -> None:
        """Nothing connects until the first batch."""
        self.ids = SchemaIds(SchemaRegistryClient({"url": settings.schema_registry_url}))
        self.tok = Tokeniser(settings.secret("pseudonym_key").encode(), settings.pseudonym_key_id)
        self.sink = ClickHouseSink(settings)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse-sink")

    async def run(self, fn: Any, *args: Any) -> Any:
        """Run blocking I/O (ClickHouse, registry) off the event loop, one call at a time."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def process(self, events: list[faust.EventT], kind: EventKind, dlq: faust.TopicT) -> None:
        """Ingest one batch: rows to ClickHouse, dead letters to Kafka and ClickHouse; return only when both hold."""
        delay = 0.5
        while True:
            now = datetime.now(UTC)
            try:
                results = [ingest(e.message.value, Source(e.message.topic, e.message.partition, e.message.offset,
                                                          int(e.message.timestamp * 1000)),
                                  kind, self.ids, self.tok, now) for e in events]
                break
            except RegistryUnavailable as exc:  # the messages are not at fault: wait for the registry
                log.warning("%s; retrying the batch in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        rows = [r for r in results if not isinstance(r, DeadLetter)]
        letters = [r for r in results if isinstance(r, DeadLetter)]
        if letters:
            dlq_id = await self.run(self.ids.id_for, dlq.get_topic_name(), DEAD_LETTER)
            sent = [await dlq.send(value=frame(dlq_id, dead_letter_payload(letter, now)), headers=letter.headers())
                    for letter in letters]
            await asyncio.gather(*sent)
            await self.run(self.sink.write, "dead_letters", [letter.row(now) for letter in letters])
            log.info("%d message(s) from %s to %s: %s", len(letters), kind.contract.name, dlq.get_topic_name(),
                     ", ".join(sorted({letter.error_code for letter in letters})))
        ingested = datetime.now(UTC)
        for row in rows:
            row["ingested_at"] = ingested
        await self.run(self.sink.write, kind.table, rows)


pipeline = Pipeline()


@app.agent(crossing_events)
async def ingest_crossings(stream: faust.StreamT) -> None:
    """Crossing events → pseudonymised ``crossings`` rows (or dead letters)."""
    async for events in stream.take_events(  # type: ignore[attr-defined]  # faust-streaming 0.15 API, not in StreamT
        settings.sink_batch_size, within=settings.sink_batch_seconds
    ):
        await pipeline.process(list(events), CROSSINGS, crossing_events_dlq)


@app.agent(landing_events)
async def ingest_landings(stream: faust.StreamT) -> None:
    """Landing events → ``landings`` rows (or dead letters)."""
    async for events in stream.take_events(  # type: ignore[attr-defined]  # faust-streaming 0.15 API, not in StreamT
        settings.sink_batch_size, within=settings.sink_batch_seconds
    ):
        await pipeline.process(list(events), LANDINGS, landing_events_dlq)
