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
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import faust
from confluent_kafka.schema_registry import SchemaRegistryClient

from agents.anomaly import evaluate_batch
from agents.anomaly import load as load_model
from agents.audit import Processing, classes_of, offsets
from agents.biometric import (
    AdjudicationRejected,
    DedupConfig,
    adjudicate,
    link_row,
    load_entries,
    search_commands,
    shard_step,
)
from agents.dedup import Shard, Thresholds
from agents.gallery import ExactIndex, SketchIndex
from agents.ingest import (
    CROSSINGS,
    LANDINGS,
    Accepted,
    DeadLetter,
    EventKind,
    Source,
    TemplatePolicy,
    dead_letter_payload,
    ingest,
)
from agents.keys import FileKeyring, Purposes
from agents.overstay import StayState, apply_batch, load_stay_rules, row_for_table
from agents.pseudonymise import Tokeniser
from agents.sealing import SqliteSubjectKeys, SubjectSealer, person_key
from agents.trafficking import Alert, Fact, KeyState, decision_facts, latest, load_rules
from agents.vault import CLASSES as VAULT_CLASSES
from agents.vault import Recent, sealed_entries
from agents.watchlist import check
from schemas.contracts import ADJUDICATION_DECISION, ALERT, DEAD_LETTER, IDENTITY_LINK
from streams.faust_consumer import App
from streams.gallery_store import read_shard
from streams.settings import load_settings
from streams.sink import ClickHouseSink
from streams.topics import (
    ALERTS,
    AUDIT_PROCESSING,
    BIOMETRIC_ADJUDICATIONS,
    BIOMETRIC_ADJUDICATIONS_DLQ,
    BIOMETRIC_GALLERY,
    BIOMETRIC_LINKS,
    BIOMETRIC_PROBES,
    CROSSING_EVENTS,
    CROSSING_EVENTS_DLQ,
    DEDUP_SHARDS,
    IDENTITY_VAULT,
    LANDING_EVENTS,
    LANDING_EVENTS_DLQ,
    STAY_STATE_TABLE,
    TRAFFICKING_FACTS,
    TRAFFICKING_STATE_TABLE,
    TopicSpec,
)
from streams.watchlist import LIST_CLASSES, Replica
from streams.wire import DecodeError, RegistryUnavailable, SchemaIds, decode, encode_payload, frame

log = logging.getLogger("lintas.app")
# What pseudonymised rows and facts still carry: tokens, coarse codes, a minor flag, a refusal category.
ANALYTICS_CLASSES = ("CHILD", "CRIME_RECORD", "PSEUDONYMOUS", "QUASI_IDENTIFIER")
settings = load_settings()

app = App(  # faust.App whose consumer never commits past an unprocessed offset
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
biometric_probes = _topic(BIOMETRIC_PROBES)
biometric_gallery = _topic(BIOMETRIC_GALLERY)
biometric_links = _topic(BIOMETRIC_LINKS)
biometric_adjudications = _topic(BIOMETRIC_ADJUDICATIONS)
biometric_adjudications_dlq = _topic(BIOMETRIC_ADJUDICATIONS_DLQ)
trafficking_facts = _topic(TRAFFICKING_FACTS)
audit_processing = _topic(AUDIT_PROCESSING)
identity_vault = _topic(IDENTITY_VAULT)
alerts_topic = _topic(ALERTS)
# Per-key rule state, changelog-backed: a restarted worker reads it back before its agent resumes.
# use_partitioner: the changelog is partitioned by key like trafficking.facts (both through the
# producer's partitioner), so the state of a key lives on the partition its facts arrive on.
trafficking_state = app.Table(
    TRAFFICKING_STATE_TABLE, default=None, partitions=TRAFFICKING_FACTS.partitions, key_type=bytes,
    value_type=bytes, use_partitioner=True,  # raw bytes: the app's serializers
)
# Open stays per traveller (agents/overstay.py), keyed and partitioned like the rule state: an entry's stay
# survives a worker restart before the exit arrives.
stay_state = app.Table(
    STAY_STATE_TABLE, default=None, partitions=TRAFFICKING_FACTS.partitions, key_type=bytes, value_type=bytes,
    use_partitioner=True,
)


def writer(table: Any) -> Callable[[str, Any], None]:
    """``store(key, state)`` for a state table: its bytes, or for ``None`` a delete (a changelog tombstone)."""
    def store(key: str, state: Any) -> None:
        if state is not None:
            table[key.encode()] = state.to_bytes()
        elif key.encode() in table:
            del table[key.encode()]  # an erased person's state
    return store


async def gathered(sends: list[Any]) -> None:
    """Wait until Kafka has acknowledged every send."""
    await asyncio.gather(*sends)


def batch_source(events: list[faust.EventT]) -> str:
    """Where a batch sits in Kafka, for its record of processing: ``topic:p0:10-42,p3:7-7``."""
    return f"{events[0].message.topic}:" + offsets([(e.message.partition, e.message.offset) for e in events])


async def send_facts(facts: list[Fact]) -> list[Any]:
    """Facts to trafficking.facts, keyed so the producer's partitioner puts each key on its state's partition."""
    return [await trafficking_facts.send(key=f.key.encode(), value=f.to_bytes()) for f in facts]


class Pipeline:
    """What the agents share: registry cache, tokeniser, sink and the thread the sink runs in."""

    def __init__(self) -> None:
        """Nothing connects until the first batch."""
        self.ids = SchemaIds(SchemaRegistryClient({"url": settings.schema_registry_url}))
        self.keyring = FileKeyring(settings.keyring_path)
        self.keys = Purposes.from_provider(self.keyring)
        self.sink = ClickHouseSink(settings)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse-sink")
        self.subject_keys = SqliteSubjectKeys(settings.subject_keys_path)
        self.sealer = SubjectSealer(self.subject_keys)
        self.vaulted = Recent()
        self.templates = TemplatePolicy(settings.dedup_dimension, settings.dedup_quality_floor)
        self.watchlists = Replica(settings)

    @property
    def tok(self) -> Tokeniser:
        """The operations tokeniser: dedup, links, facts and alerts."""
        return self.keys.operations

    def refresh_keys(self) -> None:
        """Pick up a rotation made by ``lintas keys rotate`` (one stat per batch)."""
        if self.keyring.reload_if_changed():
            self.keys = Purposes.from_provider(self.keyring)
            log.info("pseudonymisation keys now: operations %s, analytics %s, regional %s",
                     self.keys.operations.key_id, self.keys.analytics.key_id, self.keys.regional.key_id)

    async def run(self, fn: Any, *args: Any) -> Any:
        """Run blocking I/O (ClickHouse, registry) off the event loop, one call at a time."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def send_registered(self, topic: faust.TopicT, contract: Any,
                              records: list[tuple[str, dict[str, Any]]]) -> list[Any]:
        """Keyed records framed with the topic's registry id (registered on first use); the sends to await."""
        if not records:
            return []
        schema_id = await self.run(self.ids.id_for, topic.get_topic_name(), contract)
        return [await topic.send(key=key.encode(), value=frame(schema_id, encode_payload(contract, record)))
                for key, record in records]

    async def lists_ready(self) -> None:
        """Wait until this worker has read every watchlist to its end once: no check against half a list.

        The reader itself warns every 10 s while a list is not read to its end (a missing topic, say).
        """
        self.watchlists.start()
        while not self.watchlists.ready.is_set():
            await asyncio.sleep(0.05)

    async def send_alerts(self, alerts: list[Alert], family: str) -> None:
        """Alerts to the alerts topic, then to the ``alerts`` table; return only when both hold."""
        if not alerts:
            return
        await gathered(await self.send_registered(
            alerts_topic, ALERT, [(a.alert_id, a.record(self.tok.key_id, family)) for a in alerts]))
        now = datetime.now(UTC)
        await self.run(self.sink.write, "alerts", [a.row(self.tok.key_id, now, family) for a in alerts])
        log.info("%d %s alert update(s): %s", len(alerts), family, ", ".join(sorted({a.rule_id for a in alerts})))

    async def audit(self, records: list[Processing]) -> None:
        """Record of processing: to the audit topic and the processing_log table, before the batch commits."""
        records = [r for r in records if r.records]
        if not records:
            return
        await gathered([await audit_processing.send(value=r.to_json()) for r in records])
        await self.run(self.sink.write, "processing_log", [r.row() for r in records])

    async def dead_letters(self, letters: list[DeadLetter], dlq: faust.TopicT, now: datetime) -> None:
        """Dead letters to their topic (whole, with the reason) and to ClickHouse (the reason only)."""
        if not letters:
            return
        dlq_id = await self.run(self.ids.id_for, dlq.get_topic_name(), DEAD_LETTER)
        await gathered([await dlq.send(value=frame(dlq_id, dead_letter_payload(letter, now)),
                                       headers=letter.headers()) for letter in letters])
        await self.run(self.sink.write, "dead_letters", [letter.row(now) for letter in letters])
        log.info("%d dead letter(s) to %s: %s", len(letters), dlq.get_topic_name(),
                 ", ".join(sorted({letter.error_code for letter in letters})))

    async def process(self, events: list[faust.EventT], kind: EventKind, dlq: faust.TopicT) -> None:
        """Ingest one batch: rows to ClickHouse, dead letters to Kafka and ClickHouse; return only when both hold."""
        delay = 0.5
        self.refresh_keys()
        while True:
            now = datetime.now(UTC)
            try:
                results = [ingest(e.message.value, Source(e.message.topic, e.message.partition, e.message.offset,
                                                          int(e.message.timestamp * 1000)),
                                  kind, self.ids, self.keys, now, self.templates) for e in events]
                break
            except RegistryUnavailable as exc:  # the messages are not at fault: wait for the registry
                log.warning("%s; retrying the batch in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        accepted = [r for r in results if isinstance(r, Accepted)]
        letters = [r for r in results if isinstance(r, DeadLetter)] + [x for a in accepted for x in a.letters]
        await self.dead_letters(letters, dlq, now)
        people = {token: identity for a in accepted for token, identity in a.people.items()}
        keyed = {name.partition(":")[2] for name in self.subject_keys.keys([person_key(t) for t in people])}
        vault = sealed_entries(self.vaulted.fresh(people, keyed), self.sealer)  # creates new persons' keys
        probes = search_commands([p for a in accepted for p in a.probes], self.sealer, DEDUP_SHARDS)
        sends = [await identity_vault.send(key=token.encode(), value=value) for token, value in vault]
        sends += [await biometric_probes.send(value=value, partition=partition) for partition, value in probes]
        sends += await send_facts([f for a in accepted for f in a.facts])
        await gathered(sends)
        presented = [a.presented for a in accepted if a.presented is not None]
        hits = []
        if presented:
            await self.lists_ready()
            hits = check(presented, self.watchlists.lookup)
            await self.send_alerts(hits, "watchlist")
        ingested = datetime.now(UTC)
        rows = [a.row for a in accepted]
        for row in rows:
            row["ingested_at"] = ingested
        await self.run(self.sink.write, kind.table, rows)
        component, source = f"ingest_{kind.table}", batch_source(events)
        inputs = classes_of(kind.contract)
        await self.audit([
            Processing(component, "store", "analytics", ANALYTICS_CLASSES, len(rows), source,
                       f"clickhouse:{kind.table}", self.keys.analytics.key_id),
            Processing(component, "analyse", "operations", inputs, len(probes), source, BIOMETRIC_PROBES.name,
                       self.keys.operations.key_id, detail="biometric captures, sealed per person"),
            Processing(component, "store", "operations", VAULT_CLASSES, len(vault), source, IDENTITY_VAULT.name,
                       self.keys.operations.key_id, detail="identities, sealed per person"),
            Processing(component, "analyse", "operations", ANALYTICS_CLASSES, len(accepted), source,
                       TRAFFICKING_FACTS.name, self.keys.operations.key_id),
            Processing(component, "store", "operations", inputs, len(letters), source, dlq.get_topic_name(),
                       outcome="dead_letter", detail=",".join(sorted({x.error_code for x in letters}))),
            Processing("watchlist_check", "analyse", "operations", LIST_CLASSES, len(presented), source,
                       "clickhouse:alerts", self.keys.operations.key_id,
                       detail=f"{len(hits)} alert(s); lists " + ", ".join(
                           f"{name} {n}" for name, n in self.watchlists.sizes().items())),
        ])


class Dedup:
    """The gallery shards this worker owns, loaded from their Kafka partitions on first use after an assignment."""

    def __init__(self) -> None:
        """No shard is loaded until a probe for it arrives."""
        self.shards: dict[int, Shard] = {}
        self.cfg = DedupConfig(Thresholds(settings.dedup_thresholds_version, settings.dedup_red, settings.dedup_yellow),
                               pipeline.sealer, pipeline.tok, DEDUP_SHARDS, settings.dedup_index)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dedup")

    def _new_shard(self, number: int) -> Shard:
        dim = settings.dedup_dimension
        index = SketchIndex(dim, rerank=settings.dedup_rerank) if settings.dedup_index == "sketch" else ExactIndex(dim)
        return Shard(number, index)

    def _load(self, number: int) -> Shard:
        started = time.monotonic()
        shard = self._new_shard(number)
        n, unreadable = load_entries(shard, read_shard(settings, number), self.cfg.sealer)
        if unreadable:
            log.warning("gallery shard %d: %d record(s) cannot be opened (tampered, or sealed before per-subject "
                        "keys: those subjects enrol again when next seen)", number, unreadable)
        log.info("gallery shard %d loaded: %d subjects in %.1fs", number, n, time.monotonic() - started)
        return shard

    async def shard(self, number: int) -> Shard:
        """Shard ``number``, read back from biometric.gallery if this worker has not loaded it since it got it."""
        if number not in self.shards:
            self.shards[number] = await asyncio.get_running_loop().run_in_executor(self.executor, self._load, number)
        return self.shards[number]

    def forget(self, partitions: set[int]) -> None:
        """Drop shards whose partitions moved away: whoever owns them next (maybe us again) reloads them."""
        for number in partitions:
            self.shards.pop(number, None)

    async def process(self, events: list[faust.EventT]) -> None:
        """One batch of probe commands: search or decide per shard, then send and write, then (on return) commit."""
        by_shard: dict[int, list[bytes]] = {}
        for e in events:
            by_shard.setdefault(e.message.partition, []).append(e.message.value or b"")
        sends: list[Any] = []
        decisions: list[dict[str, Any]] = []
        links: list[dict[str, Any]] = []
        erased = 0
        for number, commands in sorted(by_shard.items()):
            shard = await self.shard(number)
            now = datetime.now(UTC)
            out = await asyncio.get_running_loop().run_in_executor(
                self.executor, shard_step, shard, commands, self.cfg, now)
            sends += [await biometric_probes.send(value=v, partition=p) for p, v in out.forwards + out.aliases]
            sends += [await biometric_gallery.send(key=k.encode(), value=v, partition=number) for k, v in out.gallery]
            decisions += out.decisions
            links += out.links
            erased += out.erased
            if out.erased:
                log.info("shard %d: %d probe(s) dropped, their person was erased while in flight", number, out.erased)
            if out.unreadable:
                log.warning("shard %d: %d probe(s) dropped, their template cannot be opened", number, out.unreadable)
        # one insert per table for the whole batch, after Kafka has every send
        sends += await self._send_links(links)
        sends += await send_facts([f for d in decisions for f in decision_facts(d)])
        await gathered(sends)
        await pipeline.run(pipeline.sink.write, "dedup_decisions", decisions)
        await pipeline.run(pipeline.sink.write, "dedup_links", [link_row(link) for link in links])
        await pipeline.audit([Processing("dedup", "analyse", "operations", ("BIOMETRIC",), len(decisions),
                                         batch_source(events),
                                         "clickhouse:dedup_decisions", pipeline.tok.key_id,
                                         detail=f"1:N search, {len(events)} shard visits, {len(links)} links, "
                                                f"{erased} erased in flight")])

    async def adjudicate(self, event: faust.EventT) -> None:
        """Apply one officer's decision to its link, or dead-letter it with the reason."""
        msg = event.message
        source = Source(msg.topic, msg.partition, msg.offset, int(msg.timestamp * 1000))
        now = datetime.now(UTC)
        try:
            decision = decode(msg.value, ADJUDICATION_DECISION, pipeline.ids)
            link = await pipeline.run(self._link, decision["link_id"])
            updated = adjudicate(link, decision, pipeline.tok)
        except (DecodeError, AdjudicationRejected) as err:
            field = err.field if isinstance(err, AdjudicationRejected) else ""  # undecodable: no field to name
            await pipeline.dead_letters([DeadLetter(source, err.code, field, err.reason, msg.value or b"")],
                                        biometric_adjudications_dlq, now)
            return
        if updated is link:
            return  # the same decision replayed
        await gathered(await self._send_links([updated]))
        await pipeline.run(pipeline.sink.write, "dedup_links", [link_row(updated)])

    async def _send_links(self, links: list[dict[str, Any]]) -> list[Any]:
        """Link states to biometric.links, keyed by link id; the sends to await."""
        return await pipeline.send_registered(biometric_links, IDENTITY_LINK, [(lk["link_id"], lk) for lk in links])

    def _link(self, link_id: str) -> dict[str, Any] | None:
        result = pipeline.sink.client().query(
            "SELECT * EXCEPT version FROM dedup_links FINAL WHERE link_id = {link_id:String}",
            parameters={"link_id": link_id})
        if not result.result_rows:
            return None
        link = dict(zip(result.column_names, result.result_rows[0], strict=True))
        link["event_id"] = str(link["event_id"])
        for key in ("raised_at", "updated_at"):  # clickhouse-connect gives naive UTC datetimes
            link[key] = link[key].replace(tzinfo=UTC) if link[key].tzinfo is None else link[key]
        return link


class Rules:
    """The trafficking rules: each batch of facts through :func:`agents.anomaly.evaluate_batch`, alerts out."""

    def __init__(self) -> None:
        """Rules (and the anomaly model, if one was trained) checked now, so a bad file stops the worker at start."""
        self.rules = load_rules(settings.trafficking_rules)
        self.stays = load_stay_rules(settings.stay_rules)
        path = settings.anomaly_model_path
        self.model = load_model(path) if path.exists() else None
        log.info("trafficking rules %s: %d rules, %d routes; anomaly model %s; stay rules %s: %d", self.rules.version,
                 len(self.rules.rules), len(self.rules.routes),
                 self.model.version if self.model else "none (run `lintas trafficking train`; rule off)",
                 self.stays.version, len(self.stays.rules))

    async def process(self, events: list[faust.EventT]) -> None:
        """Apply each fact to its key's state (table), then alerts to Kafka and ClickHouse; return = commit."""
        facts = [Fact.from_bytes(e.message.value or b"") for e in events]

        raised = evaluate_batch(facts, lambda key: KeyState.from_bytes(trafficking_state.get(key.encode())),
                                writer(trafficking_state), self.rules, self.model)
        current = list(latest(raised).values())
        await pipeline.send_alerts(current, "trafficking")

        stays, overstays = apply_batch(facts, lambda key: StayState.from_bytes(stay_state.get(key.encode())),
                                       writer(stay_state), self.stays, pipeline.tok.key_id)
        await pipeline.send_alerts(overstays, "overstay")
        now = datetime.now(UTC)
        await pipeline.run(pipeline.sink.write, "stays", [row_for_table(r, now) for r in stays])
        source = batch_source(events)
        await pipeline.audit([
            Processing("trafficking_rules", "analyse", "operations", ANALYTICS_CLASSES, len(facts), source,
                       "clickhouse:alerts", pipeline.tok.key_id,
                       detail=f"{len(current)} alert updates, rules {self.rules.version}"),
            Processing("overstay", "analyse", "operations", ("PSEUDONYMOUS", "QUASI_IDENTIFIER"), len(stays), source,
                       "clickhouse:stays", pipeline.tok.key_id,
                       detail=f"{len(overstays)} overstay alert(s), stay rules {self.stays.version}"),
        ])


pipeline = Pipeline()
dedup = Dedup()
rules = Rules()


@app.on_partitions_revoked.connect
def _forget_revoked(app: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
    """A shard whose partition was revoked is dropped; it is read back from Kafka if it comes back."""
    revoked: set[Any] = args[0]
    dedup.forget({tp.partition for tp in revoked if tp.topic == BIOMETRIC_PROBES.name})


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


@app.agent(biometric_probes)
async def dedup_shards(stream: faust.StreamT) -> None:
    """Probes through the gallery shards this worker owns: search, forward, or decide and enrol."""
    async for events in stream.take_events(  # type: ignore[attr-defined]  # faust-streaming 0.15 API, not in StreamT
        settings.dedup_batch_size, within=settings.sink_batch_seconds
    ):
        await dedup.process(list(events))


@app.agent(trafficking_facts)
async def trafficking_rules(stream: faust.StreamT) -> None:
    """Facts → per-key rule state → alerts for officers' review (alerts topic and table)."""
    async for events in stream.take_events(  # type: ignore[attr-defined]  # faust-streaming 0.15 API, not in StreamT
        settings.trafficking_batch_size, within=settings.sink_batch_seconds
    ):
        await rules.process(list(events))


@app.agent(biometric_adjudications)
async def adjudications(stream: faust.StreamT) -> None:
    """Officers' decisions → the link's new status (biometric.links and dedup_links)."""
    async for event in stream.events():
        await dedup.adjudicate(event)
