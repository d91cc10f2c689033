"""The one Faust app of Lintas: it hosts every agent of :mod:`streams.worker.stages` and decides when the worker stops.

Importing this module opens nothing and touches no file: it declares the app and its
agents. The handlers and the services they share are built when the worker starts
(:func:`start`), from the one settings object. The busy agents run on librdkafka batch
consumers (:mod:`streams.worker.runtime` says why); officers' decisions, a handful a minute,
are Faust agents. Every agent hands its records to its handler and makes the effects hold in
the one order of :mod:`streams.worker.effects` before its offsets are committed, so a replay
after a crash rewrites the same event ids, which ReplacingMergeTree and the views' distinct
counts absorb. ``lintas worker --processes N`` runs N such workers: each agent's group spreads
its topic's partitions over them, and what a partition's agent keeps (gallery shards, rule,
stay, link and case state) moves with the partition.

An error that rises out of an agent is the worker's to decide on, here (:func:`stop`): the
worker exits at once without committing the batch, ``75`` when a server stayed away past its
budget (the supervisor restarts it and Kafka replays the batch), ``70`` for anything else.

Run with ``lintas worker`` (or ``faust -A streams.worker.app worker --without-web``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import NoReturn

import faust

from schemas.errors import Unavailable
from streams import clients
from streams.compacted import read_partition
from streams.settings import Settings, load_settings
from streams.topics import APP_ID, Role, TopicSpec, agent_group
from streams.worker.faust_consumer import App
from streams.worker.lanes import Lane
from streams.worker.runtime import BatchAgent, LagRow, Record
from streams.worker.sender import KafkaSender
from streams.worker.services import build_services
from streams.worker.stages import BATCH_STAGES, Pipeline, assemble, stage

log = logging.getLogger("lintas.app")
settings = load_settings()  # the environment only: no file is read, nothing is created
EXIT_UNAVAILABLE = 75  # EX_TEMPFAIL: a server stayed away past its budget; restart and replay
EXIT_FAILED = 70  # EX_SOFTWARE: anything else; nothing of the batch was committed

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

_built: Pipeline | None = None


def start(configured: Settings | None = None) -> Pipeline:
    """Build the services, senders, tables and handlers (once): keyring, key store, rules, thresholds fail here."""
    global _built
    if _built is None:
        s = configured or settings
        if s.secure:  # Faust's own clients (the officers' decision agents) connect as the worker too
            sec = clients.aiokafka_security(s, Role.WORKER)
            app.conf.broker_credentials = faust.SASLCredentials(
                username=sec["sasl_plain_username"], password=sec["sasl_plain_password"],
                ssl_context=sec["ssl_context"], mechanism=sec["sasl_mechanism"])
        senders: dict[str, KafkaSender] = {}

        def sender(name: str) -> KafkaSender:
            if name not in senders:
                senders[name] = KafkaSender(s, name)
            return senders[name]

        _built = assemble(build_services(s), sender, lambda topic, partition: read_partition(s, topic, partition))
    return _built


def stop(agent: str, exc: BaseException) -> NoReturn:
    """The worker's decision on an error out of an agent: exit now, uncommitted, with the code that says why."""
    code = EXIT_UNAVAILABLE if isinstance(exc, Unavailable) else EXIT_FAILED
    log.critical("agent %s failed (%s: %s); stopping the worker (exit %d) without committing its batch",
                 agent, type(exc).__name__, exc, code, exc_info=exc)
    logging.shutdown()
    os._exit(code)  # not a graceful stop: it would wait on servers that may be the reason we stop


def batch_agents(pipeline: Pipeline, configured: Settings | None = None) -> list[BatchAgent]:
    """The batch agents of a started worker, each with its handler, sender, lane and tables."""
    s = configured or settings
    svc, member = pipeline.services, f"{socket.gethostname()}:{os.getpid()}"

    def lag_writer(lane: Lane) -> Callable[[list[LagRow]], Awaitable[None]]:
        async def lag(rows: list[LagRow]) -> None:
            now = datetime.now(UTC)
            await lane(svc.sink.write, "consumer_lag", [r.row(member, now) for r in rows])
        return lag

    return [BatchAgent(st.name, agent_group(st.name), st.topic.name, pipeline.handlers[st.name],
                       pipeline.senders[st.name], svc.lanes(st.name), svc.sink.write, s,
                       size=st.size(s), within=s.sink_batch_seconds, tables=pipeline.tables_of(st),
                       lag=lag_writer(svc.lanes(st.name)))
            for st in BATCH_STAGES]


@app.task
async def run_batch_agents() -> None:
    """Run every batch agent until the worker stops; an agent that fails stops the worker, uncommitted."""
    agents = batch_agents(start())
    halt = asyncio.Event()
    tasks = {asyncio.get_running_loop().create_task(agent.run(halt), name=agent.name): agent for agent in agents}
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except asyncio.CancelledError:  # the worker is stopping: each agent leaves its group
        halt.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    for task in done:
        if (exc := task.exception()) is not None:
            stop(tasks[task].name, exc)


def _record(event: faust.EventT) -> Record:
    m = event.message
    return Record(m.topic, m.partition, m.offset, m.timestamp, m.key, m.value)


def _topic(spec: TopicSpec) -> faust.TopicT:
    return app.topic(spec.name, value_type=bytes, key_type=bytes, value_serializer="raw", key_serializer="raw",
                     partitions=spec.partitions)


async def _one_at_a_time(name: str, stream: faust.StreamT) -> None:
    """A Faust agent's loop: each record through its stage; Faust commits it once this returns."""
    pipeline, st = start(), stage(name)
    async for event in stream.events():
        try:
            await pipeline.handle(st, [_record(event)])
        except Exception as exc:  # noqa: BLE001 - the worker decides, as for the batch agents
            stop(name, exc)


@app.agent(_topic(stage("adjudications").topic))
async def adjudications(stream: faust.StreamT) -> None:
    """Officers' decisions on links → checked against the link → the link agent (biometric.pairs)."""
    await _one_at_a_time("adjudications", stream)


@app.agent(_topic(stage("review_decisions").topic))
async def review_decisions(stream: faust.StreamT) -> None:
    """Officers' decisions → form checked → the case agent (review.cases) or the link checks."""
    await _one_at_a_time("review_decisions", stream)
