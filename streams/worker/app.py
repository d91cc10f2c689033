"""The one Faust app of Lintas: every agent, the topic it reads and the tables it keeps, declared once.

Importing this module opens nothing and touches no file: it declares the app and its
agents. The handlers and the services they share (:mod:`streams.worker.handlers`) are built
when the worker starts (:func:`start`), from the one settings object. Agents only loop
over batches and hand them to their handler, which returns once its rows are in
ClickHouse and its sends in Kafka, so committed offsets never run ahead of them; a
replay after a crash rewrites the same event ids, which ReplacingMergeTree and the
views' distinct counts absorb.

The busy agents (:data:`BATCH_AGENTS`: ingest, dedup shards, links, rules, cases) run on
librdkafka batch consumers hosted by this app (:mod:`streams.worker.runtime` says why: Faust's
own consumer and producer cost ~150 µs a record); officers' decisions, a handful a
minute, are Faust agents. ``lintas worker --processes N`` runs N such workers: each
agent's group spreads its topic's partitions over them, and what a partition's agent
keeps (gallery shards, rule, stay, link and case state) moves with the partition.

Run with ``lintas worker`` (or ``faust -A streams.worker.app worker --without-web``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import faust

from agents.cases import CaseState
from agents.links import LinkState
from agents.overstay import StayState
from agents.trafficking.state import KeyState
from streams import clients
from streams.compacted import read_partition
from streams.settings import Settings, load_settings
from streams.topics import (
    AGENTS,
    APP_ID,
    BIOMETRIC_ADJUDICATIONS,
    CASE_STATE_TABLE,
    LINK_STATE_TABLE,
    REVIEW_DECISIONS,
    STAY_STATE_TABLE,
    TRAFFICKING_STATE_TABLE,
    Role,
    TopicSpec,
    agent_group,
    changelog_of,
)
from streams.worker.faust_consumer import App
from streams.worker.handlers import Handlers, Outlets, Services, handlers, services
from streams.worker.runtime import BatchAgent, LagRow, Record, Sender
from streams.worker.state import ChangelogTable

log = logging.getLogger("lintas.app")
settings = load_settings()  # the environment only: no file is read, nothing is created
EXIT_AGENT_FAILED = 70  # EX_SOFTWARE: an agent failed; nothing of its batch was committed

app = App(  # faust.App whose consumer never commits past an unprocessed offset
    APP_ID,
    broker=";".join(f"kafka://{hp}" for hp in settings.kafka_bootstrap.split(",")),
    store="memory://",
    value_serializer="raw",
    key_serializer="raw",
    web_enabled=False,
    web_bind="127.0.0.1",
    web_port=settings.worker_web_port,
    datadir=str(settings.state_dir / "worker-data" / f"member-{settings.worker_member}"),
    consumer_auto_offset_reset="earliest",
    broker_commit_interval=1.0,
    broker_session_timeout=10.0,
    broker_heartbeat_interval=1.0,
    producer_acks=-1,
    topic_disable_leader=True,
)


@dataclass(frozen=True)
class AgentSpec:
    """One batch agent: its name (its topic and group in :data:`streams.topics.AGENTS`), batch size and tables."""

    name: str
    size: Callable[[Settings], int]
    handler: Callable[[Handlers], Any]
    tables: tuple[str, ...] = ()

    @property
    def topic(self) -> TopicSpec:
        """The topic the agent reads."""
        return AGENTS[self.name]

    @property
    def group(self) -> str:
        """The agent's consumer group."""
        return agent_group(self.name)


BATCH_AGENTS: tuple[AgentSpec, ...] = (
    # crossing events → pseudonymised rows (or dead letters), captures, facts, watchlist checks
    AgentSpec("ingest_crossings", lambda s: s.sink_batch_size, lambda h: h.crossings),
    # landing events → rows (or dead letters), facts
    AgentSpec("ingest_landings", lambda s: s.sink_batch_size, lambda h: h.landings),
    # captures through the gallery shards this worker owns: verify, search, keep pairs, decide
    AgentSpec("dedup_shards", lambda s: s.dedup_batch_size, lambda h: h.dedup),
    # link evidence and officers' checked decisions → each link's state → biometric.links and dedup_links
    AgentSpec("dedup_links", lambda s: s.dedup_batch_size, lambda h: h.links, (LINK_STATE_TABLE,)),
    # facts → per-key rule and stay state → alerts for officers' review (alerts topic and table)
    AgentSpec("trafficking_rules", lambda s: s.trafficking_batch_size, lambda h: h.rules,
              (TRAFFICKING_STATE_TABLE, STAY_STATE_TABLE)),
    # indicators and checked decisions → each case's state → the cases table
    AgentSpec("cases", lambda s: s.trafficking_batch_size, lambda h: h.cases, (CASE_STATE_TABLE,)),
)
# Each table's state type; its changelog (streams.topics.CHANGELOGS) is partitioned like its agent's topic.
TABLE_TYPES: dict[str, Any] = {
    TRAFFICKING_STATE_TABLE: KeyState,
    STAY_STATE_TABLE: StayState,
    LINK_STATE_TABLE: LinkState,
    CASE_STATE_TABLE: CaseState,
}


@dataclass
class Worker:
    """What a started worker holds: services, senders, tables and handlers."""

    services: Services
    senders: dict[str, Sender]
    tables: dict[str, ChangelogTable[Any]]
    handlers: Handlers


_built: Worker | None = None


def start(configured: Settings | None = None) -> Worker:
    """Build the services, senders, tables and handlers (once): keyring, key store, rules, thresholds fail here."""
    global _built
    if _built is None:
        s = configured or settings
        if s.secure:  # Faust's own clients (the officers' decision agents) connect as the worker too
            sec = clients.aiokafka_security(s, Role.WORKER)
            app.conf.broker_credentials = faust.SASLCredentials(
                username=sec["sasl_plain_username"], password=sec["sasl_plain_password"],
                ssl_context=sec["ssl_context"], mechanism=sec["sasl_mechanism"])
        svc = services(s)
        senders: dict[str, Sender] = {}

        def sender(name: str) -> Sender:
            if name not in senders:
                senders[name] = Sender(s, name)
            return senders[name]

        def read(topic: str, partition: int) -> list[tuple[bytes | None, bytes | None]]:
            return read_partition(s, topic, partition)

        owner = {t: a.name for a in BATCH_AGENTS for t in a.tables}
        tables = {name: ChangelogTable(name, changelog_of(name).name, changelog_of(name).partitions, kind.from_bytes,
                                       lambda state: state.to_bytes(), sender(owner[name]).send, read)
                  for name, kind in TABLE_TYPES.items()}
        out = Outlets(trafficking_state=tables[TRAFFICKING_STATE_TABLE], stay_state=tables[STAY_STATE_TABLE],
                      link_state=tables[LINK_STATE_TABLE], case_state=tables[CASE_STATE_TABLE], sender=sender,
                      read=read)
        _built = Worker(svc, senders, tables, handlers(svc, out))
    return _built


def batch_agents(worker: Worker, configured: Settings | None = None) -> list[BatchAgent]:
    """The batch agents of a started worker, each with its handler, sender and tables."""
    s = configured or settings
    member = f"{socket.gethostname()}:{os.getpid()}"

    async def lag(rows: list[LagRow]) -> None:
        now = datetime.now(UTC)
        await worker.services.run(worker.services.sink.write, "consumer_lag", [r.row(member, now) for r in rows])

    return [BatchAgent(a.name, a.group, a.topic.name, a.handler(worker.handlers), worker.senders[a.name], s,
                       size=a.size(s), within=s.sink_batch_seconds, tables=[worker.tables[t] for t in a.tables],
                       lag=lag, io=worker.services.waited)
            for a in BATCH_AGENTS]


@app.task
async def run_batch_agents() -> None:
    """Run every batch agent until the worker stops; an agent that fails stops the worker, uncommitted."""
    worker = start()
    agents = batch_agents(worker)
    stop = asyncio.Event()
    tasks = {asyncio.get_running_loop().create_task(agent.run(stop), name=agent.name): agent for agent in agents}
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except asyncio.CancelledError:  # the worker is stopping: each agent leaves its group
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    for task in done:
        if (exc := task.exception()) is not None:
            log.critical("agent %s failed (%s: %s); stopping the worker without committing its batch",
                         tasks[task].name, type(exc).__name__, exc, exc_info=exc)
    logging.shutdown()
    os._exit(EXIT_AGENT_FAILED)


def _record(event: faust.EventT) -> Record:
    m = event.message
    return Record(m.topic, m.partition, m.offset, m.timestamp, m.key, m.value)


def _topic(spec: TopicSpec) -> faust.TopicT:
    return app.topic(spec.name, value_type=bytes, key_type=bytes, value_serializer="raw", key_serializer="raw",
                     partitions=spec.partitions)


@app.agent(_topic(BIOMETRIC_ADJUDICATIONS))
async def adjudications(stream: faust.StreamT) -> None:
    """Officers' decisions → checked against the link → the link agent (biometric.pairs)."""
    handler = start().handlers.link_decisions
    async for event in stream.events():
        await handler.adjudicate(_record(event))


@app.agent(_topic(REVIEW_DECISIONS))
async def review(stream: faust.StreamT) -> None:
    """Officers' decisions → form checked → the case agent (cases) or the link agent (links)."""
    handler = start().handlers.decisions
    async for event in stream.events():
        await handler.process(_record(event))
