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
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import faust
import numpy as np
from confluent_kafka.schema_registry import SchemaRegistryClient

from agents.anomaly import evaluate_batch
from agents.anomaly import load as load_model
from agents.audit import Processing, classes_of, offsets
from agents.biometric import LINK_COMMAND, DedupConfig, Shard, capture_commands, load_records, read, shard_step
from agents.calibration import Observed, drift
from agents.dedup import ThresholdSet
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
from agents.links import AdjudicationRejected, LinkState, adjudicate, link_row
from agents.links import apply as apply_link
from agents.overstay import StayState, apply_batch, load_stay_rules, row_for_table
from agents.pseudonymise import Tokeniser
from agents.sealing import SqliteSubjectKeys, SubjectSealer, person_key
from agents.trafficking import Alert, Fact, KeyState, decision_facts, latest, link_facts, load_rules
from agents.vault import CLASSES as VAULT_CLASSES
from agents.vault import Recent, sealed_entries
from agents.watchlist import check
from schemas.contracts import ADJUDICATION_DECISION, ALERT, DEAD_LETTER, IDENTITY_LINK
from streams.faust_consumer import App
from streams.gallery_store import read_partition
from streams.settings import load_settings
from streams.sink import ClickHouseSink
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
    CROSSING_EVENTS,
    CROSSING_EVENTS_DLQ,
    DEDUP_SHARDS,
    IDENTITY_VAULT,
    LANDING_EVENTS,
    LANDING_EVENTS_DLQ,
    LINK_STATE_TABLE,
    STAY_STATE_TABLE,
    TRAFFICKING_FACTS,
    TRAFFICKING_STATE_TABLE,
    TopicSpec,
)
from streams.watchlist import LIST_CLASSES, Replica
from streams.wire import DecodeError, RegistryUnavailable, SchemaIds, avro_bytes, decode, encode_payload, frame

log = logging.getLogger("lintas.app")
# What pseudonymised rows and facts still carry: tokens, coarse codes, a minor flag, a refusal category.
ANALYTICS_CLASSES = ("CHILD", "CRIME_RECORD", "PSEUDONYMOUS", "QUASI_IDENTIFIER")
settings = load_settings()

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


crossing_events = _topic(CROSSING_EVENTS)
landing_events = _topic(LANDING_EVENTS)
crossing_events_dlq = _topic(CROSSING_EVENTS_DLQ)
landing_events_dlq = _topic(LANDING_EVENTS_DLQ)
biometric_probes = _topic(BIOMETRIC_PROBES)
biometric_gallery = _topic(BIOMETRIC_GALLERY)
biometric_links = _topic(BIOMETRIC_LINKS)
biometric_pairs = _topic(BIOMETRIC_PAIRS)
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
# Each link's evidence (pairs of samples) and decision (agents/links.py), keyed and partitioned like biometric.pairs.
link_state = app.Table(
    LINK_STATE_TABLE, default=None, partitions=BIOMETRIC_PAIRS.partitions, key_type=bytes, value_type=bytes,
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
        probes = capture_commands([p for a in accepted for p in a.probes], self.sealer, DEDUP_SHARDS)
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
    """The gallery shards this worker owns (read back from their Kafka partitions on first use), and the thresholds."""

    def __init__(self) -> None:
        """No shard is loaded until a command for it arrives; thresholds are read now (a bad file stops the worker)."""
        self.shards: dict[int, Shard] = {}
        self._thresholds_stamp: tuple[float, int] | None = None
        self.cfg = DedupConfig(self._read_thresholds(), pipeline.sealer, pipeline.tok, DEDUP_SHARDS,
                               settings.dedup_window, settings.dedup_exact_max, settings.dedup_rerank,
                               settings.dedup_dimension)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dedup")
        self.uncalibrated: set[str] = set()
        self.monitor = Monitor(every_s=settings.dedup_monitor_seconds)

    def _read_thresholds(self) -> ThresholdSet:
        path = settings.dedup_thresholds_path
        calibrated = path if path.is_file() else None
        self._thresholds_stamp = _stamp(path)
        thresholds = ThresholdSet.load(calibrated)
        log.info("dedup thresholds %s (%s): %s", thresholds.version, "calibrated" if calibrated else "packaged",
                 ", ".join(f"{m} verify {t.verify:.3f} yellow {t.yellow:.3f} red {t.red:.3f}"
                           for m, t in sorted(thresholds.models.items())) or "no model calibrated")
        return thresholds

    def refresh_thresholds(self) -> None:
        """Take up thresholds ``lintas dedup calibrate`` wrote (one stat per batch); every decision records them."""
        if _stamp(settings.dedup_thresholds_path) != self._thresholds_stamp:
            self.cfg = replace(self.cfg, thresholds=self._read_thresholds())
            self.monitor = Monitor(every_s=settings.dedup_monitor_seconds)

    def _load(self, number: int) -> Shard:
        started = time.monotonic()
        shard = Shard(number)
        n, unreadable = load_records(shard, read_partition(settings, BIOMETRIC_GALLERY.name, number), self.cfg)
        if unreadable:
            log.warning("gallery shard %d: %d identity record(s) cannot be opened (tampered, or sealed with a key "
                        "this store never had): those identities enrol again when next seen", number, unreadable)
        log.info("gallery shard %d loaded: %d identities, %d samples in %.1fs", number, n, shard.sample_count(),
                 time.monotonic() - started)
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
        """One batch of commands: per shard, verify, search, keep pairs; sends, rows, then records; return = commit."""
        self.refresh_thresholds()
        by_shard: dict[int, list[tuple[int, bytes]]] = {}
        for e in events:
            by_shard.setdefault(e.message.partition, []).append((e.message.offset, e.message.value or b""))
        sends: list[Any] = []
        decisions: list[dict[str, Any]] = []
        searches: list[dict[str, Any]] = []
        records: list[tuple[int, str, bytes | None]] = []
        counts = {"erased": 0, "unreadable": 0, "duplicates": 0, "late": 0, "links": 0}
        for number, commands in sorted(by_shard.items()):
            shard = await self.shard(number)
            now = datetime.now(UTC)
            out = await asyncio.get_running_loop().run_in_executor(
                self.executor, shard_step, shard, commands, self.cfg, now)
            sends += [await biometric_probes.send(value=v, partition=p) for p, v in out.commands]
            sends += [await biometric_pairs.send(key=k.encode(), value=v) for k, v in out.links]
            decisions += out.decisions
            searches += out.searches
            records += [(number, k, v) for k, v in out.records]
            for name in ("erased", "unreadable", "duplicates", "late"):
                counts[name] += getattr(out, name)
            counts["links"] += len(out.links)
            for model in sorted(out.uncalibrated - self.uncalibrated):
                log.warning("template model %s has no calibrated thresholds: its captures stay under their document "
                            "and raise no finding until `lintas dedup calibrate` has run", model)
                self.uncalibrated.add(model)
            if out.erased:
                log.info("shard %d: %d command(s) dropped, their person was erased while in flight", number, out.erased)
            if out.unreadable:
                log.warning("shard %d: %d command(s) dropped, their template cannot be opened", number, out.unreadable)
        sends += await send_facts([f for d in decisions for f in decision_facts(d)])
        await gathered(sends)
        await pipeline.run(pipeline.sink.write, "dedup_decisions", decisions)
        await pipeline.run(pipeline.sink.write, "dedup_searches", searches)
        # the identities' records last: a record on Kafka means everything it caused was sent
        await gathered([await biometric_gallery.send(key=k.encode(), value=v, partition=number)
                        for number, k, v in records])
        await pipeline.audit([Processing("dedup", "analyse", "operations", ("BIOMETRIC",), len(decisions),
                                         batch_source(events), "clickhouse:dedup_decisions", pipeline.tok.key_id,
                                         detail=f"1:1 verification and 1:N link evidence, {len(events)} commands, "
                                                f"{counts['links']} link commands, {counts['duplicates']} duplicates, "
                                                f"{counts['late']} older than their window, {counts['erased']} "
                                                f"erased in flight; thresholds {self.cfg.thresholds.version}")])
        held = sum(len(s.identities) for s in self.shards.values())
        for warning in self.monitor.update(decisions, searches, self.cfg.thresholds,
                                           held * DEDUP_SHARDS // max(1, len(self.shards))):
            log.warning("dedup accuracy drift: %s", warning)

    async def adjudicate(self, event: faust.EventT) -> None:
        """Check one officer's decision against its link and pass it to the link agent, or dead-letter it."""
        msg = event.message
        source = Source(msg.topic, msg.partition, msg.offset, int(msg.timestamp * 1000))
        now = datetime.now(UTC)
        try:
            decision = decode(msg.value, ADJUDICATION_DECISION, pipeline.ids)
            link = await pipeline.run(self._link, decision["link_id"])
            decided = adjudicate(link, decision, pipeline.tok.token("officer", decision["officer_id"]))
        except (DecodeError, AdjudicationRejected) as err:
            field = err.field if isinstance(err, AdjudicationRejected) else ""  # undecodable: no field to name
            await pipeline.dead_letters([DeadLetter(source, err.code, field, err.reason, msg.value or b"")],
                                        biometric_adjudications_dlq, now)
            return
        if decided is None:
            return  # the same decision replayed
        await gathered([await biometric_pairs.send(key=decision["link_id"].encode(), value=avro_bytes(LINK_COMMAND, {
            "kind": "DECIDE", "link_id": decision["link_id"], "model": "", "pair": "", "score": 0.0, "sides": [],
            "erased": False, **decided}))])

    def _link(self, link_id: str) -> dict[str, Any] | None:
        result = pipeline.sink.client().query(
            "SELECT * EXCEPT version FROM dedup_links FINAL WHERE link_id = {link_id:String}",
            parameters={"link_id": link_id})
        if not result.result_rows:
            return None
        link = dict(zip(result.column_names, result.result_rows[0], strict=True))
        for key in ("raised_at", "updated_at"):  # clickhouse-connect gives naive UTC datetimes
            link[key] = link[key].replace(tzinfo=UTC) if link[key].tzinfo is None else link[key]
        return link


def _stamp(path: Any) -> tuple[float, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime, st.st_size


class Monitor:
    """The worker's own view of dedup accuracy (its shards' last decisions and searches), checked against calibration.

    ClickHouse's ``dedup_accuracy_daily`` is the fleet-wide figure; this one warns in the worker's log.
    """

    def __init__(self, keep: int = 2000, every_s: float = 60.0) -> None:
        """Rolling windows of ``keep`` returns and searches per model; a check at most every ``every_s``."""
        self.keep, self.every_s, self.last = keep, every_s, 0.0
        self.returns: dict[str, list[float]] = {}
        self.best: dict[str, dict[str, float]] = {}

    def update(self, decisions: list[dict[str, Any]], searches: list[dict[str, Any]], thresholds: ThresholdSet,
               gallery_size: int) -> list[str]:
        """Add a batch; the drift warnings, if it is time to check (``gallery_size``: identities, estimated)."""
        for d in decisions:
            t = thresholds.for_model(d["model"])
            if d["outcome"] in ("known_traveller", "inconclusive") and d["quality"] >= t.good_quality:
                self.returns.setdefault(d["model"], []).append(float(d["score"]))
        for s in searches:
            held = self.best.setdefault(s["model"], {})
            held[s["subject_id"]] = max(held.get(s["subject_id"], -1.0), float(s["best_score"]))
        for model in self.returns:
            self.returns[model] = self.returns[model][-self.keep:]
        for model, held in self.best.items():
            if len(held) > self.keep:
                self.best[model] = dict(list(held.items())[-self.keep:])
        if time.monotonic() - self.last < self.every_s:
            return []
        self.last = time.monotonic()
        warnings = []
        for model in sorted(set(self.returns) | set(self.best)):
            t = thresholds.for_model(model)
            if model not in thresholds.models:
                continue
            scores = self.returns.get(model, [])
            best = list(self.best.get(model, {}).values())
            observed = Observed(len(scores), float(np.median(scores)) if scores else 0.0,
                                float(np.mean(np.array(scores) < t.yellow)) if scores else 0.0,
                                len(best), float(np.mean(np.array(best) >= t.yellow)) if best else 0.0,
                                gallery_size)
            warnings += [f"{model}: {reason}" for reason in drift(observed, t)]
        return warnings


class Links:
    """The link agent: each link's pairs and decision in a table, its state to biometric.links and dedup_links."""

    async def process(self, events: list[faust.EventT]) -> None:
        """Apply each command to its link's state, then send what changed; return = commit."""
        now = datetime.now(UTC)
        records: dict[str, dict[str, Any]] = {}
        tombstones: set[str] = set()
        facts: list[dict[str, Any]] = []
        thresholds = dedup.cfg.thresholds
        for e in events:
            key = e.message.key or b""
            cmd = read(LINK_COMMAND, e.message.value or b"")
            out = apply_link(LinkState.from_bytes(link_state.get(key)), cmd, thresholds.for_model, now,
                             settings.dedup_auto_confirm_red, pipeline.tok.key_id)
            if out.state is None:
                if key in link_state:
                    del link_state[key]
            else:
                link_state[key] = out.state.to_bytes()
            link = key.decode()
            if out.tombstone:
                tombstones.add(link)
                records.pop(link, None)
            if out.record is not None:
                records[link] = out.record
                tombstones.discard(link)
            facts += out.facts
        sends = await pipeline.send_registered(biometric_links, IDENTITY_LINK, sorted(records.items()))
        sends += [await biometric_links.send(key=k.encode(), value=None) for k in sorted(tombstones)]
        sends += await send_facts(link_facts(facts))
        await gathered(sends)
        await pipeline.run(pipeline.sink.write, "dedup_links", [link_row(r) for r in records.values()])
        if records:
            statuses = sorted({f"{r['colour']} {r['status']}" for r in records.values()})
            log.info("%d link update(s): %s", len(records), ", ".join(statuses))
        await pipeline.audit([Processing("dedup_links", "analyse", "operations", ("PSEUDONYMOUS",), len(events),
                                         batch_source(events), "clickhouse:dedup_links", pipeline.tok.key_id,
                                         detail=f"{len(records)} link update(s), {len(tombstones)} erased, "
                                                f"{len(facts)} subject fact(s)")])


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
links = Links()
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


@app.agent(biometric_pairs)
async def dedup_links(stream: faust.StreamT) -> None:
    """Link evidence and officers' checked decisions → each link's state → biometric.links and dedup_links."""
    async for events in stream.take_events(  # type: ignore[attr-defined]  # faust-streaming 0.15 API, not in StreamT
        settings.dedup_batch_size, within=settings.sink_batch_seconds
    ):
        await links.process(list(events))


@app.agent(trafficking_facts)
async def trafficking_rules(stream: faust.StreamT) -> None:
    """Facts → per-key rule state → alerts for officers' review (alerts topic and table)."""
    async for events in stream.take_events(  # type: ignore[attr-defined]  # faust-streaming 0.15 API, not in StreamT
        settings.trafficking_batch_size, within=settings.sink_batch_seconds
    ):
        await rules.process(list(events))


@app.agent(biometric_adjudications)
async def adjudications(stream: faust.StreamT) -> None:
    """Officers' decisions → checked against the link → the link agent (biometric.pairs)."""
    async for event in stream.events():
        await dedup.adjudicate(event)
