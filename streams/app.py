"""The one Faust app of Lintas: every topic and table it reads or writes, declared once, and its thin agents.

Importing this module opens nothing and touches no file: it declares the app, its topics
and tables (all lazy in Faust). The handlers and the services they share
(:mod:`streams.handlers`) are built when the worker starts (:func:`start`, or the first
agent to run), from the one settings object. Agents only loop over batches and hand them
to their handler, which returns once its rows are in ClickHouse and its sends in Kafka,
so committed offsets never run ahead of them; a replay after a crash rewrites the same
event ids, which ReplacingMergeTree and the views' distinct counts absorb.

Run with ``lintas worker`` (or ``faust -A streams.app worker --without-web``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import faust

from streams.faust_consumer import App
from streams.handlers import Handlers, Outlets, handlers, services
from streams.settings import Settings, load_settings
from streams.topics import (
    ALERTS,
    APP_ID,
    AUDIT_PROCESSING,
    BIOMETRIC_ADJUDICATIONS,
    BIOMETRIC_ADJUDICATIONS_DLQ,
    BIOMETRIC_GALLERY,
    BIOMETRIC_LINKS,
    BIOMETRIC_PAIRS,
    BIOMETRIC_PROBES,
    CASE_COMMANDS,
    CASE_STATE_TABLE,
    CROSSING_EVENTS,
    CROSSING_EVENTS_DLQ,
    IDENTITY_VAULT,
    LANDING_EVENTS,
    LANDING_EVENTS_DLQ,
    LINK_STATE_TABLE,
    REVIEW_DECISIONS,
    REVIEW_DECISIONS_DLQ,
    STAY_STATE_TABLE,
    TRAFFICKING_FACTS,
    TRAFFICKING_STATE_TABLE,
    TopicSpec,
)

settings = load_settings()  # the environment only: no file is read, nothing is created

app = App(  # faust.App whose consumer never commits past an unprocessed offset
    APP_ID,
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


def _table(name: str, like: TopicSpec) -> Any:
    # use_partitioner: the changelog is partitioned by key like the topic its agent reads (both through the
    # producer's partitioner), so the state of a key lives on the partition its records arrive on
    return app.Table(name, default=None, partitions=like.partitions, key_type=bytes, value_type=bytes,
                     use_partitioner=True)


crossing_events = _topic(CROSSING_EVENTS)
landing_events = _topic(LANDING_EVENTS)
biometric_probes = _topic(BIOMETRIC_PROBES)
biometric_pairs = _topic(BIOMETRIC_PAIRS)
biometric_adjudications = _topic(BIOMETRIC_ADJUDICATIONS)
trafficking_facts = _topic(TRAFFICKING_FACTS)
review_decisions = _topic(REVIEW_DECISIONS)
case_commands = _topic(CASE_COMMANDS)
outlets = Outlets(
    crossing_dlq=_topic(CROSSING_EVENTS_DLQ), landing_dlq=_topic(LANDING_EVENTS_DLQ),
    adjudication_dlq=_topic(BIOMETRIC_ADJUDICATIONS_DLQ), probes=biometric_probes,
    gallery=_topic(BIOMETRIC_GALLERY), pairs=biometric_pairs, links=_topic(BIOMETRIC_LINKS),
    facts=trafficking_facts, audit=_topic(AUDIT_PROCESSING), vault=_topic(IDENTITY_VAULT),
    alerts=_topic(ALERTS), cases=case_commands, review_dlq=_topic(REVIEW_DECISIONS_DLQ),
    # per-key rule state, changelog-backed: a restarted worker reads it back before its agent resumes
    trafficking_state=_table(TRAFFICKING_STATE_TABLE, TRAFFICKING_FACTS),
    # open stays per traveller (agents/overstay.py): an entry's stay survives a restart before the exit arrives
    stay_state=_table(STAY_STATE_TABLE, TRAFFICKING_FACTS),
    # each link's evidence (pairs of samples) and decision (agents/links.py)
    link_state=_table(LINK_STATE_TABLE, BIOMETRIC_PAIRS),
    # each case's indicators and officers' decisions (agents/cases.py)
    case_state=_table(CASE_STATE_TABLE, CASE_COMMANDS),
)

_built: Handlers | None = None


def start(configured: Settings | None = None) -> Handlers:
    """Build the services and handlers (once): keyring, key store, rules, thresholds; a bad file fails here."""
    global _built
    if _built is None:
        _built = handlers(services(configured or settings), outlets)
    return _built


@app.on_partitions_revoked.connect
def _forget_revoked(app: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
    """A shard whose partition was revoked is dropped; it is read back from Kafka if it comes back."""
    revoked: set[Any] = args[0]
    if _built is not None:
        _built.dedup.forget({tp.partition for tp in revoked if tp.topic == BIOMETRIC_PROBES.name})


def _batches(stream: faust.StreamT, size: int) -> AsyncIterator[list[faust.EventT]]:
    # faust-streaming 0.15's take_events: up to `size` events, or what came within the batch interval
    return stream.take_events(size, within=settings.sink_batch_seconds)  # type: ignore[attr-defined, no-any-return]


@app.agent(crossing_events)
async def ingest_crossings(stream: faust.StreamT) -> None:
    """Crossing events → pseudonymised ``crossings`` rows (or dead letters), captures, facts, watchlist checks."""
    handler = start().crossings
    async for events in _batches(stream, settings.sink_batch_size):
        await handler.process(list(events))


@app.agent(landing_events)
async def ingest_landings(stream: faust.StreamT) -> None:
    """Landing events → ``landings`` rows (or dead letters), facts."""
    handler = start().landings
    async for events in _batches(stream, settings.sink_batch_size):
        await handler.process(list(events))


@app.agent(biometric_probes)
async def dedup_shards(stream: faust.StreamT) -> None:
    """Captures through the gallery shards this worker owns: verify, search, keep pairs, decide."""
    handler = start().dedup
    async for events in _batches(stream, settings.dedup_batch_size):
        await handler.process(list(events))


@app.agent(biometric_pairs)
async def dedup_links(stream: faust.StreamT) -> None:
    """Link evidence and officers' checked decisions → each link's state → biometric.links and dedup_links."""
    handler = start().links
    async for events in _batches(stream, settings.dedup_batch_size):
        await handler.process(list(events))


@app.agent(trafficking_facts)
async def trafficking_rules(stream: faust.StreamT) -> None:
    """Facts → per-key rule state → alerts for officers' review (alerts topic and table)."""
    handler = start().rules
    async for events in _batches(stream, settings.trafficking_batch_size):
        await handler.process(list(events))


@app.agent(biometric_adjudications)
async def adjudications(stream: faust.StreamT) -> None:
    """Officers' decisions → checked against the link → the link agent (biometric.pairs)."""
    handler = start().dedup
    async for event in stream.events():
        await handler.adjudicate(event)


@app.agent(review_decisions)
async def review(stream: faust.StreamT) -> None:
    """Officers' decisions → form checked → the case agent (cases) or the link agent (links)."""
    handler = start().decisions
    async for event in stream.events():
        await handler.process(event)


@app.agent(case_commands)
async def cases(stream: faust.StreamT) -> None:
    """Indicators and checked decisions → each case's state → the ``cases`` table."""
    handler = start().cases
    async for events in _batches(stream, settings.trafficking_batch_size):
        await handler.process(list(events))
