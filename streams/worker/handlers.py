"""The batch handlers of the worker's agents, and the services they share, built on start from the settings.

Each handler takes one batch of Kafka records, calls the pure functions of :mod:`agents`
and sends what they return; it returns only when everything the batch caused is in Kafka
and ClickHouse, so the agent's commit never runs ahead of them. Nothing here is built at
import: :func:`services` opens the keyring, the per-subject key store and the registry
client when the worker starts. Each handler sends through a :class:`Sender` of its own
(one librdkafka producer: queue, then wait for every acknowledgement at once) and keeps
its state in the tables of :class:`Outlets`, so a test can hand it fakes instead of a broker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from agents.anomaly import evaluate_batch
from agents.anomaly import load as load_model
from agents.audit import Processing, classes_of, offsets
from agents.biometric import LINK_COMMAND, DedupConfig, Shard, capture_commands, load_records, read, shard_step
from agents.calibration import Observed, drift
from agents.cases import (
    LINK_ACTIONS,
    CaseState,
    add_indicator,
    case_row,
    check_form,
    decide,
    decision_command,
    indicator_command,
    load_policy,
    read_command,
)
from agents.cases import erase as erase_case
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
from agents.links import LinkState, adjudicate, link_row
from agents.links import apply as apply_link
from agents.overstay import StayState, apply_batch, load_stay_rules, row_for_table
from agents.pseudonymise import Tokeniser
from agents.sealing import SqliteSubjectKeys, SubjectSealer, person_key
from agents.signing import verify
from agents.trafficking.config import load_rules
from agents.trafficking.engine import Alert, latest
from agents.trafficking.facts import Fact, decision_facts, link_facts
from agents.trafficking.state import KeyState
from agents.vault import CLASSES as VAULT_CLASSES
from agents.vault import Recent, sealed_entries
from agents.watchlist import LIST_CLASSES, Presented, check
from schemas.contracts import ADJUDICATION_DECISION, ALERT, DEAD_LETTER, IDENTITY_LINK, REVIEW_DECISION, Contract
from schemas.errors import InvalidMessage
from schemas.wire import RegistryUnavailable, SchemaIds, avro_bytes, decode, encode_payload, frame
from streams import clients
from streams.post_keys import PostKeys
from streams.settings import Settings
from streams.topics import (
    AGENTS,
    ALERTS,
    AUDIT_PROCESSING,
    BIOMETRIC_ADJUDICATIONS_DLQ,
    BIOMETRIC_GALLERY,
    BIOMETRIC_LINKS,
    BIOMETRIC_PAIRS,
    BIOMETRIC_PROBES,
    CASE_COMMANDS,
    CROSSING_EVENTS_DLQ,
    DEDUP_SHARDS,
    IDENTITY_VAULT,
    LANDING_EVENTS_DLQ,
    REVIEW_DECISIONS_DLQ,
    TRAFFICKING_FACTS,
    Role,
)
from streams.watchlist_replica import Replica
from streams.worker.runtime import Record
from streams.worker.sink import ClickHouseSink

log = logging.getLogger("lintas.app")
S = TypeVar("S")
# What pseudonymised rows and facts still carry: tokens, coarse codes, a minor flag, a refusal category.
ANALYTICS_CLASSES = ("CHILD", "CRIME_RECORD", "PSEUDONYMOUS", "QUASI_IDENTIFIER")


Event = Record  # what a handler reads of each record: topic, partition, offset, timestamp, key, value


class Sender(Protocol):
    """Where a handler's records go (:class:`streams.worker.runtime.Sender`: one producer, bulk)."""

    def send(self, topic: str, value: bytes | None, key: bytes | None = None, partition: int | None = None,
             headers: list[tuple[str, bytes]] | None = None) -> None:
        """Queue one record."""

    async def flush(self) -> None:
        """Return once Kafka acknowledged every record queued."""


class StateTable(Protocol[S]):
    """A changelog-backed table of state objects (:class:`streams.worker.state.ChangelogTable`)."""

    def get(self, key: bytes) -> S | None:
        """The key's state (a fresh one, or ``None``, if it has none)."""

    def put(self, key: bytes, state: S | None) -> None:
        """The key's new state; ``None`` deletes it."""

    def __contains__(self, key: object) -> bool:
        """Whether the key has a state."""


class Sink(Protocol):
    """Where rows go (:class:`streams.worker.sink.ClickHouseSink`)."""

    def write(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Insert the rows, retrying until ClickHouse has them."""

    def client(self) -> Any:
        """The clickhouse-connect client, for the few reads a handler needs."""


class Lists(Protocol):
    """This worker's copy of the watchlists (:class:`streams.watchlist_replica.Replica`)."""

    ready: Any

    def start(self) -> None:
        """Start following the list topics."""

    def lookup(self, token: str) -> Any:
        """The entries listed under a document token."""

    def sizes(self) -> dict[str, int]:
        """Entries per list."""


@dataclass
class Outlets:
    """The state tables the handlers keep, and the senders they send through: the worker's, or a test's fakes."""

    trafficking_state: StateTable[KeyState]
    stay_state: StateTable[StayState]
    link_state: StateTable[LinkState]
    case_state: StateTable[CaseState]
    sender: Callable[[str], Sender]  # each agent's own sender, by agent name (the same one every time asked)
    read: Callable[[str, int], list[tuple[bytes | None, bytes | None]]]  # a compacted partition, oldest first


@dataclass
class Services:
    """What the handlers share: registry cache, keys, sink, per-subject keys, watchlists, and the I/O thread."""

    settings: Settings
    ids: SchemaIds
    keyring: FileKeyring
    keys: Purposes
    sink: Sink
    executor: ThreadPoolExecutor
    subject_keys: SqliteSubjectKeys
    sealer: SubjectSealer
    vaulted: Recent
    templates: TemplatePolicy
    watchlists: Lists
    post_keys: Callable[[str], bytes | None]  # each post's signing key (streams/post_keys.py)
    waited: dict[str, float] = field(default_factory=dict)  # seconds each agent waited on ClickHouse and the registry
    lanes: dict[str, ThreadPoolExecutor] = field(default_factory=dict)  # each batch agent's own I/O thread

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

    def start(self, fn: Any, *args: Any) -> asyncio.Task[Any]:
        """:meth:`run` as a task of the calling agent (its I/O thread, its waits), to await later."""
        task = asyncio.current_task()
        return asyncio.get_running_loop().create_task(self.run(fn, *args),
                                                      name=task.get_name() if task is not None else None)

    async def run(self, fn: Any, *args: Any) -> Any:
        """Run blocking I/O (ClickHouse, registry) off the event loop, one call at a time per agent.

        A batch agent (its task named after it) has an I/O thread of its own, so ingest's insert
        never queues behind the rules' or a lag report (measured: half of ingest's time went
        there with one shared thread); anything else shares :attr:`executor`. The time waited
        counts against the calling agent in :attr:`waited`.
        """
        task = asyncio.current_task()
        name = task.get_name() if task is not None else ""
        lane = self.executor
        if name in AGENTS:
            lane = self.lanes.get(name) or self.lanes.setdefault(
                name, ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"io-{name}"))
        t0 = time.monotonic()
        try:
            return await asyncio.get_running_loop().run_in_executor(lane, fn, *args)
        finally:
            self.waited[name] = self.waited.get(name, 0.0) + time.monotonic() - t0


def services(settings: Settings) -> Services:
    """Open what the handlers share: the keyring (created on first use), the subject key store, the clients."""
    keyring = FileKeyring(settings.keyring_path)
    subject_keys = SqliteSubjectKeys(settings.subject_keys_path)
    return Services(
        settings=settings, ids=SchemaIds(clients.registry(settings, Role.WORKER)), keyring=keyring,
        keys=Purposes.from_provider(keyring), sink=ClickHouseSink(settings),
        executor=ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse-sink"),
        subject_keys=subject_keys, sealer=SubjectSealer(subject_keys), vaulted=Recent(),
        templates=TemplatePolicy(settings.dedup_dimension, settings.dedup_quality_floor),
        watchlists=Replica(settings), post_keys=PostKeys(settings.post_keys_dir),
    )


def source_of(record: Record) -> Source:
    """Where a record sits in Kafka."""
    return Source(record.topic, record.partition, record.offset, int(record.timestamp * 1000))


def batch_source(records: list[Record]) -> str:
    """Where a batch sits in Kafka, for its record of processing: ``topic:p0:10-42,p3:7-7``."""
    return f"{records[0].topic}:" + offsets([(r.partition, r.offset) for r in records])


class Outputs:
    """The sends and writes every handler makes: registered records, facts, alerts, dead letters, audit."""

    def __init__(self, svc: Services, sender: Sender) -> None:
        """Send through ``sender`` with the shared services."""
        self.svc, self.sender = svc, sender

    async def registered(self, topic: str, contract: Contract, records: list[tuple[str, dict[str, Any]]]) -> None:
        """Queue keyed records framed with the topic's registry id (registered on first use)."""
        if not records:
            return
        schema_id = await self.svc.run(self.svc.ids.id_for, topic, contract)
        send = self.sender.send
        for key, record in records:
            send(topic, frame(schema_id, encode_payload(contract, record)), key.encode())

    def facts(self, facts: list[Fact]) -> None:
        """Queue facts to trafficking.facts, keyed so each key reaches its state's partition."""
        send, topic = self.sender.send, TRAFFICKING_FACTS.name
        for f in facts:
            send(topic, f.to_bytes(), f.key.encode())

    async def alerts(self, alerts: list[Alert], family: str) -> None:
        """Alerts to the alerts topic, then to the ``alerts`` table, then to their cases; return once all hold."""
        if not alerts:
            return
        key_id = self.svc.tok.key_id
        await self.registered(ALERTS.name, ALERT, [(a.alert_id, a.record(key_id, family)) for a in alerts])
        await self.sender.flush()
        now = datetime.now(UTC)
        rows = [a.row(key_id, now, family) for a in alerts]
        await self.svc.run(self.svc.sink.write, "alerts", rows)
        # then each alert to its key's case, as an indicator: the case agent combines them
        for cid, cmd in map(indicator_command, rows):
            self.sender.send(CASE_COMMANDS.name, cmd, cid.encode())
        await self.sender.flush()
        log.info("%d %s alert update(s): %s", len(alerts), family, ", ".join(sorted({a.rule_id for a in alerts})))

    async def audit(self, records: list[Processing]) -> None:
        """Record of processing: to the audit topic and the processing_log table, before the batch commits."""
        records = [r for r in records if r.records]
        if not records:
            return
        for r in records:
            self.sender.send(AUDIT_PROCESSING.name, r.to_json())
        await self.sender.flush()
        await self.svc.run(self.svc.sink.write, "processing_log", [r.row() for r in records])

    async def dead_letters(self, letters: list[DeadLetter], dlq: str, now: datetime) -> None:
        """Dead letters to their topic (whole, with the reason) and to ClickHouse (the reason only)."""
        if not letters:
            return
        dlq_id = await self.svc.run(self.svc.ids.id_for, dlq, DEAD_LETTER)
        for letter in letters:
            self.sender.send(dlq, frame(dlq_id, dead_letter_payload(letter, now)), headers=letter.headers())
        await self.sender.flush()
        await self.svc.run(self.svc.sink.write, "dead_letters", [letter.row(now) for letter in letters])
        log.info("%d dead letter(s) to %s: %s", len(letters), dlq,
                 ", ".join(sorted({letter.error_code for letter in letters})))


class Ingest:
    """An input topic's handler: rows to ClickHouse, captures to the gallery, facts to the rules, checks."""

    def __init__(self, svc: Services, sender: Sender, kind: EventKind, dlq: str) -> None:
        """Ingest ``kind`` events; their dead letters go to topic ``dlq``."""
        self.svc, self.kind, self.dlq = svc, kind, dlq
        self.send = Outputs(svc, sender)

    def revoked(self, partitions: set[int]) -> None:
        """Nothing is held per input partition."""

    async def process(self, events: list[Event]) -> None:
        """Ingest one batch; return only when its rows, sends, dead letters and record of processing hold."""
        self.svc.refresh_keys()
        now, results = await self._decoded(events)
        accepted = [r for r in results if isinstance(r, Accepted)]
        letters = [r for r in results if isinstance(r, DeadLetter)] + [x for a in accepted for x in a.letters]
        rows = [a.row for a in accepted]
        ingested = datetime.now(UTC)
        for row in rows:
            row["ingested_at"] = ingested
        # the rows go in while the sends are made and acknowledged (both before the batch commits)
        stored = self.svc.start(self.svc.sink.write, self.kind.table, rows)
        try:
            await self.send.dead_letters(letters, self.dlq, now)
            vault, probes = await self._to_operations(accepted)
            presented = [a.presented for a in accepted if a.presented is not None]
            hits = await self._checked(presented)
        finally:
            await stored
        await self.send.audit(self._record(events, rows=len(rows), probes=len(probes), vaulted=len(vault),
                                           facts=len(accepted), letters=letters, checked=len(presented),
                                           hits=len(hits)))

    async def _decoded(self, events: list[Event]) -> tuple[datetime, list[Accepted | DeadLetter]]:
        """Each message decoded, validated and pseudonymised; the registry is asked off the loop, and waited for."""
        delay = 0.5
        while True:
            try:
                await self.svc.run(self.svc.ids.prefetch, [e.value for e in events])
                break
            except RegistryUnavailable as exc:  # the messages are not at fault: wait for the registry
                log.warning("%s; retrying the batch in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        now = datetime.now(UTC)
        results: list[Accepted | DeadLetter] = []
        for e in events:
            try:
                signer = verify(e.headers, e.value, self.svc.post_keys)
            except InvalidMessage as err:  # unsigned or forged: never decoded
                results.append(DeadLetter.from_error(source_of(e), err, e.value))
                continue
            results.append(ingest(e.value, source_of(e), self.kind, self.svc.ids, self.svc.keys, now,
                                  self.svc.templates, signed_by=signer))
        return now, results

    async def _to_operations(self, accepted: list[Accepted]) -> tuple[list[Any], list[Any]]:
        """Identities to the vault and captures to the gallery (both sealed per person), facts to the rules."""
        people = {token: identity for a in accepted for token, identity in a.people.items()}
        keyed = {name.partition(":")[2] for name in self.svc.subject_keys.keys([person_key(t) for t in people])}
        vault = sealed_entries(self.svc.vaulted.fresh(people, keyed), self.svc.sealer)  # creates new persons' keys
        probes = capture_commands([p for a in accepted for p in a.probes], self.svc.sealer, DEDUP_SHARDS)
        send = self.send.sender.send
        for token, value in vault:
            send(IDENTITY_VAULT.name, value, token.encode())
        for partition, value in probes:
            send(BIOMETRIC_PROBES.name, value, partition=partition)
        self.send.facts([f for a in accepted for f in a.facts])
        await self.send.sender.flush()
        return vault, probes

    async def _checked(self, presented: list[Presented]) -> list[Alert]:
        """Documents against this worker's watchlists (read to their end first: no check against half a list)."""
        if not presented:
            return []
        self.svc.watchlists.start()
        while not self.svc.watchlists.ready.is_set():  # the reader warns while a list is not read to its end
            await asyncio.sleep(0.05)
        hits = check(presented, self.svc.watchlists.lookup)
        await self.send.alerts(hits, "watchlist")
        return hits

    def _record(self, events: list[Event], *, rows: int, probes: int, vaulted: int, facts: int,
                letters: list[DeadLetter], checked: int, hits: int) -> list[Processing]:
        """The batch's record of processing: one entry per destination."""
        component, source, table = f"ingest_{self.kind.table}", batch_source(events), self.kind.table
        inputs, ops, analytics = classes_of(self.kind.contract), self.svc.keys.operations, self.svc.keys.analytics
        lists = ", ".join(f"{name} {n}" for name, n in self.svc.watchlists.sizes().items())

        def entry(activity: str, purpose: str, classes: tuple[str, ...], records: int, destination: str, *,
                  key_id: str = "", outcome: str = "ok", detail: str = "", by: str = component) -> Processing:
            return Processing(component=by, activity=activity, purpose=purpose, data_classes=classes,
                              records=records, source=source, destination=destination, key_id=key_id,
                              outcome=outcome, detail=detail)

        return [
            entry("store", "analytics", ANALYTICS_CLASSES, rows, f"clickhouse:{table}", key_id=analytics.key_id),
            entry("analyse", "operations", inputs, probes, BIOMETRIC_PROBES.name, key_id=ops.key_id,
                  detail="biometric captures, sealed per person"),
            entry("store", "operations", VAULT_CLASSES, vaulted, IDENTITY_VAULT.name, key_id=ops.key_id,
                  detail="identities, sealed per person"),
            entry("analyse", "operations", ANALYTICS_CLASSES, facts, TRAFFICKING_FACTS.name, key_id=ops.key_id),
            entry("store", "operations", inputs, len(letters), self.dlq, outcome="dead_letter",
                  detail=",".join(sorted({x.error_code for x in letters}))),
            entry("analyse", "operations", LIST_CLASSES, checked, "clickhouse:alerts", key_id=ops.key_id,
                  by="watchlist_check", detail=f"{hits} alert(s); lists {lists}"),
        ]


def _stamp(path: Path) -> tuple[float, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime, st.st_size


class Dedup:
    """The gallery shards this worker owns (read back from their Kafka partitions on first use), and the thresholds."""

    def __init__(self, svc: Services, sender: Sender,
                 read: Callable[[str, int], list[tuple[bytes | None, bytes | None]]]) -> None:
        """No shard is loaded until a command for it arrives; thresholds are read now (a bad file stops the worker)."""
        self.svc, self.settings, self.read = svc, svc.settings, read
        self.send = Outputs(svc, sender)
        self.shards: dict[int, Shard] = {}
        self._thresholds_stamp: tuple[float, int] | None = None
        s = self.settings
        self.cfg = DedupConfig(self._read_thresholds(), svc.sealer, svc.tok, DEDUP_SHARDS, s.dedup_window,
                               s.dedup_exact_max, s.dedup_rerank, s.dedup_dimension)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dedup")
        self.uncalibrated: set[str] = set()
        self.monitor = Monitor(every_s=s.dedup_monitor_seconds)

    def _read_thresholds(self) -> ThresholdSet:
        path = self.settings.dedup_thresholds_path
        calibrated = path if path.is_file() else None
        self._thresholds_stamp = _stamp(path)
        thresholds = ThresholdSet.load(calibrated)
        log.info("dedup thresholds %s (%s): %s", thresholds.version, "calibrated" if calibrated else "packaged",
                 ", ".join(f"{m} verify {t.verify:.3f} yellow {t.yellow:.3f} red {t.red:.3f}"
                           for m, t in sorted(thresholds.models.items())) or "no model calibrated")
        return thresholds

    def refresh_thresholds(self) -> None:
        """Take up thresholds ``lintas dedup calibrate`` wrote (one stat per batch); every decision records them."""
        if _stamp(self.settings.dedup_thresholds_path) != self._thresholds_stamp:
            self.cfg = replace(self.cfg, thresholds=self._read_thresholds())
            self.monitor = Monitor(every_s=self.settings.dedup_monitor_seconds)

    def _load(self, number: int) -> Shard:
        started = time.monotonic()
        shard = Shard(number)
        n, unreadable = load_records(shard, self.read(BIOMETRIC_GALLERY.name, number), self.cfg)
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

    def revoked(self, partitions: set[int]) -> None:
        """Drop shards whose partitions moved away: whoever owns them next (maybe us again) reloads them."""
        for number in partitions:
            self.shards.pop(number, None)

    async def process(self, events: list[Event]) -> None:
        """One batch of commands: per shard, verify, search, keep pairs; sends, rows, then records; return = commit."""
        self.refresh_thresholds()
        by_shard: dict[int, list[tuple[int, bytes]]] = {}
        for e in events:
            by_shard.setdefault(e.partition, []).append((e.offset, e.value or b""))
        send = self.send.sender.send
        decisions: list[dict[str, Any]] = []
        searches: list[dict[str, Any]] = []
        records: list[tuple[int, str, bytes | None]] = []
        counts = {"erased": 0, "unreadable": 0, "duplicates": 0, "late": 0, "links": 0}
        for number, commands in sorted(by_shard.items()):
            shard = await self.shard(number)
            now = datetime.now(UTC)
            out = await asyncio.get_running_loop().run_in_executor(
                self.executor, shard_step, shard, commands, self.cfg, now)
            for partition, command in out.commands:
                send(BIOMETRIC_PROBES.name, command, partition=partition)
            for link, pair in out.links:
                send(BIOMETRIC_PAIRS.name, pair, link.encode())
            decisions += out.decisions
            searches += out.searches
            records += [(number, k, v) for k, v in out.records]
            for name in ("erased", "unreadable", "duplicates", "late"):
                counts[name] += getattr(out, name)
            counts["links"] += len(out.links)
            self._say(number, out)
        self.send.facts([f for d in decisions for f in decision_facts(d)])
        await self.send.sender.flush()
        await self.svc.run(self.svc.sink.write, "dedup_decisions", decisions)
        await self.svc.run(self.svc.sink.write, "dedup_searches", searches)
        # the identities' records last: a record on Kafka means everything it caused was sent
        for number, identity, record in records:
            send(BIOMETRIC_GALLERY.name, record, identity.encode(), partition=number)
        await self.send.sender.flush()
        await self.send.audit([Processing(
            component="dedup", activity="analyse", purpose="operations", data_classes=("BIOMETRIC",),
            records=len(decisions), source=batch_source(events), destination="clickhouse:dedup_decisions",
            key_id=self.svc.tok.key_id,
            detail=f"1:1 verification and 1:N link evidence, {len(events)} commands, {counts['links']} link "
                   f"commands, {counts['duplicates']} duplicates, {counts['late']} older than their window, "
                   f"{counts['erased']} erased in flight; thresholds {self.cfg.thresholds.version}")])
        held = sum(len(s.identities) for s in self.shards.values())
        for warning in self.monitor.update(decisions, searches, self.cfg.thresholds,
                                           held * DEDUP_SHARDS // max(1, len(self.shards))):
            log.warning("dedup accuracy drift: %s", warning)

    def _say(self, number: int, out: Any) -> None:
        for model in sorted(out.uncalibrated - self.uncalibrated):
            log.warning("template model %s has no calibrated thresholds: its captures stay under their document "
                        "and raise no finding until `lintas dedup calibrate` has run", model)
            self.uncalibrated.add(model)
        if out.erased:
            log.info("shard %d: %d command(s) dropped, their person was erased while in flight", number, out.erased)
        if out.unreadable:
            log.warning("shard %d: %d command(s) dropped, their template cannot be opened", number, out.unreadable)



class LinkDecisions:
    """Officers' decisions on links (biometric.adjudications, review.decisions): checked against the link, passed on."""

    def __init__(self, svc: Services, sender: Sender) -> None:
        """Decisions go to the link agent through ``sender``."""
        self.svc = svc
        self.send = Outputs(svc, sender)

    async def adjudicate(self, msg: Record) -> None:
        """Check one officer's decision against its link and pass it to the link agent, or dead-letter it."""
        try:
            await self.svc.run(self.svc.ids.prefetch, [msg.value])
            decision = decode(msg.value, ADJUDICATION_DECISION, self.svc.ids)
        except InvalidMessage as err:
            await self.send.dead_letters([DeadLetter.from_error(source_of(msg), err, msg.value)],
                                         BIOMETRIC_ADJUDICATIONS_DLQ.name, datetime.now(UTC))
            return
        await self.decide_link(decision, msg, BIOMETRIC_ADJUDICATIONS_DLQ.name)

    async def decide_link(self, decision: dict[str, Any], msg: Record, dlq: str) -> None:
        """One decision (``link_id``, ``decision`` CONFIRM/REJECT, ``officer_id``, ...) checked and passed on."""
        try:
            link = await self.svc.run(self._link, decision["link_id"])
            decided = adjudicate(link, decision, self.svc.tok.token("officer", decision["officer_id"]))
        except InvalidMessage as err:
            await self.send.dead_letters([DeadLetter.from_error(source_of(msg), err, msg.value)], dlq,
                                         datetime.now(UTC))
            return
        if decided is None:
            return  # the same decision replayed
        self.send.sender.send(BIOMETRIC_PAIRS.name, avro_bytes(LINK_COMMAND, {
            "kind": "DECIDE", "link_id": decision["link_id"], "model": "", "pair": "", "score": 0.0, "sides": [],
            "erased": False, **decided}), decision["link_id"].encode())
        await self.send.sender.flush()

    def _link(self, link_id: str) -> dict[str, Any] | None:
        result = self.svc.sink.client().query(
            "SELECT * EXCEPT version FROM dedup_links FINAL WHERE link_id = {link_id:String}",
            parameters={"link_id": link_id})
        if not result.result_rows:
            return None
        link = dict(zip(result.column_names, result.result_rows[0], strict=True))
        for key in ("raised_at", "updated_at"):  # clickhouse-connect gives naive UTC datetimes
            link[key] = link[key].replace(tzinfo=UTC) if link[key].tzinfo is None else link[key]
        return link


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

    def __init__(self, svc: Services, sender: Sender, table: StateTable[LinkState], dedup: Dedup) -> None:
        """Links colour their pairs with the thresholds ``dedup`` holds now."""
        self.svc, self.table, self.dedup = svc, table, dedup
        self.send = Outputs(svc, sender)

    def revoked(self, partitions: set[int]) -> None:
        """The table forgets its own partitions."""

    async def process(self, events: list[Event]) -> None:
        """Apply each command to its link's state, then send what changed; return = commit."""
        now = datetime.now(UTC)
        table = self.table
        records: dict[str, dict[str, Any]] = {}
        tombstones: set[str] = set()
        facts: list[dict[str, Any]] = []
        thresholds = self.dedup.cfg.thresholds
        for e in events:
            key = e.key or b""
            cmd = read(LINK_COMMAND, e.value or b"")
            out = apply_link(table.get(key), cmd, thresholds.for_model, now,
                             self.svc.settings.dedup_auto_confirm_red, self.svc.tok.key_id)
            if out.state is not None or key in table:
                table.put(key, out.state)
            link = key.decode()
            if out.tombstone:
                tombstones.add(link)
                records.pop(link, None)
            if out.record is not None:
                records[link] = out.record
                tombstones.discard(link)
            facts += out.facts
        await self.send.registered(BIOMETRIC_LINKS.name, IDENTITY_LINK, sorted(records.items()))
        for link in sorted(tombstones):
            self.send.sender.send(BIOMETRIC_LINKS.name, None, link.encode())
        self.send.facts(link_facts(facts))
        await self.send.sender.flush()
        await self.svc.run(self.svc.sink.write, "dedup_links", [link_row(r) for r in records.values()])
        if records:
            statuses = sorted({f"{r['colour']} {r['status']}" for r in records.values()})
            log.info("%d link update(s): %s", len(records), ", ".join(statuses))
        await self.send.audit([Processing(
            component="dedup_links", activity="analyse", purpose="operations", data_classes=("PSEUDONYMOUS",),
            records=len(events), source=batch_source(events), destination="clickhouse:dedup_links",
            key_id=self.svc.tok.key_id,
            detail=f"{len(records)} link update(s), {len(tombstones)} erased, {len(facts)} subject fact(s)")])


def _keyed(table: StateTable[S]) -> tuple[Callable[[str], S], Callable[[str, S | None], None]]:
    """``load(key)`` and ``store(key, state)`` over a state table, for the rule engine's batch functions."""
    return (lambda key: table.get(key.encode())), (lambda key, state: table.put(key.encode(), state))  # type: ignore[return-value]


class Rules:
    """The trafficking and stay rules: each batch of facts through the rule engine, alerts out."""

    def __init__(self, svc: Services, sender: Sender, rule_state: StateTable[KeyState],
                 stay_state: StateTable[StayState]) -> None:
        """Rules (and the anomaly model, if one was trained) checked now, so a bad file stops the worker at start."""
        self.svc, self.rule_state, self.stay_state = svc, rule_state, stay_state
        self.send = Outputs(svc, sender)
        s = svc.settings
        self.rules = load_rules(s.trafficking_rules)
        self.stays = load_stay_rules(s.stay_rules)
        self.model = load_model(s.anomaly_model_path) if s.anomaly_model_path.exists() else None
        log.info("trafficking rules %s: %d rules, %d routes; anomaly model %s; stay rules %s: %d", self.rules.version,
                 len(self.rules.rules), len(self.rules.routes),
                 self.model.version if self.model else "none (run `lintas trafficking train`; rule off)",
                 self.stays.version, len(self.stays.rules))

    def revoked(self, partitions: set[int]) -> None:
        """The tables forget their own partitions."""

    async def process(self, events: list[Event]) -> None:
        """Apply each fact to its key's state (table), then alerts to Kafka and ClickHouse; return = commit."""
        facts = [Fact.from_bytes(e.value or b"") for e in events]
        raised = evaluate_batch(facts, *_keyed(self.rule_state), self.rules, self.model)
        current = list(latest(raised).values())
        await self.send.alerts(current, "trafficking")
        stays, overstays = apply_batch(facts, *_keyed(self.stay_state), self.stays, self.svc.tok.key_id)
        await self.send.alerts(overstays, "overstay")
        now = datetime.now(UTC)
        await self.svc.run(self.svc.sink.write, "stays", [row_for_table(r, now) for r in stays])
        source, key_id = batch_source(events), self.svc.tok.key_id
        await self.send.audit([
            Processing(component="trafficking_rules", activity="analyse", purpose="operations",
                       data_classes=ANALYTICS_CLASSES, records=len(facts), source=source,
                       destination="clickhouse:alerts", key_id=key_id,
                       detail=f"{len(current)} alert updates, rules {self.rules.version}"),
            Processing(component="overstay", activity="analyse", purpose="operations",
                       data_classes=("PSEUDONYMOUS", "QUASI_IDENTIFIER"), records=len(stays), source=source,
                       destination="clickhouse:stays", key_id=key_id,
                       detail=f"{len(overstays)} overstay alert(s), stay rules {self.stays.version}"),
        ])


class Decisions:
    """Officers' decisions off review.decisions, their form checked, passed on to the case or link agent.

    Case decisions go to the case agent, link decisions through the link checks to the link agent;
    a bad one is dead-lettered with the reason.
    """

    def __init__(self, svc: Services, sender: Sender, links: LinkDecisions) -> None:
        """Link decisions go through ``links``' checks against the link."""
        self.svc, self.links = svc, links
        self.send = Outputs(svc, sender)

    async def process(self, msg: Record) -> None:
        """One decision; return = commit."""
        try:
            await self.svc.run(self.svc.ids.prefetch, [msg.value])
            decision = decode(msg.value, REVIEW_DECISION, self.svc.ids)
            check_form(decision["action"], decision["reason_code"], decision["pathway"])
            if (decision["target_kind"] == "LINK") != (decision["action"] in LINK_ACTIONS):
                raise InvalidMessage("wrong_target", "action", f"{decision['action']} is not an action on a "
                                     f"{decision['target_kind'].lower()}")
        except InvalidMessage as err:
            await self.send.dead_letters([DeadLetter.from_error(source_of(msg), err, msg.value)],
                                         REVIEW_DECISIONS_DLQ.name, datetime.now(UTC))
            return
        if decision["target_kind"] == "LINK":
            await self.links.decide_link({"decision_id": decision["decision_id"], "link_id": decision["target_id"],
                                          "decision": LINK_ACTIONS[decision["action"]],
                                          "officer_id": decision["officer_id"], "decided_at": decision["decided_at"]},
                                         msg, REVIEW_DECISIONS_DLQ.name)
            return
        officer = self.svc.tok.token("officer", decision["officer_id"])
        self.send.sender.send(CASE_COMMANDS.name, decision_command(decision, officer), decision["target_id"].encode())
        await self.send.sender.flush()


class Cases:
    """The case agent: each case's indicators and decisions in a table, its row to ``cases``."""

    def __init__(self, svc: Services, sender: Sender, table: StateTable[CaseState]) -> None:
        """The review policy is checked now, so a bad file stops the worker at start."""
        self.svc, self.table = svc, table
        self.send = Outputs(svc, sender)
        self.policy = load_policy(svc.settings.review_policy)
        log.info("review policy %s: threshold %g (%s)", self.policy.version, self.policy.threshold,
                 self.policy.calibrated_on)

    def revoked(self, partitions: set[int]) -> None:
        """The table forgets its own partitions."""

    async def process(self, events: list[Event]) -> None:
        """Apply each command to its case, then the rows; return = commit."""
        now, key_id, table = datetime.now(UTC), self.svc.tok.key_id, self.table
        rows: dict[str, dict[str, Any]] = {}
        decided: dict[str, dict[str, Any]] = {}
        letters: list[DeadLetter] = []
        for e in events:
            key = e.key or b""
            cmd = read_command(e.value or b"")
            state = table.get(key) or CaseState()
            if cmd["kind"] == "INDICATOR":
                add_indicator(state, cmd["indicator"], cmd["key"], self.policy)
            elif cmd["kind"] == "ERASE":  # lintas erase: ClickHouse's rows were already deleted or blanked
                if (kept := erase_case(state, cmd["tokens"])) is None:
                    if key in table:
                        table.put(key, None)
                    rows.pop(key.decode(), None)
                    continue
                state = kept
            else:
                try:
                    row = decide(state, cmd["decision"], self.policy, key_id, now)
                except InvalidMessage as err:
                    letters.append(DeadLetter.from_error(source_of(e), err, e.value))
                    continue
                if row is None:  # a replay: its row again (it may not have reached ClickHouse)
                    row = _decision_row(state.decisions[cmd["decision"]["decision_id"]])
                decided[row["decision_id"]] = row
            if state.key:
                table.put(key, state)
            if (case := case_row(state, self.policy, key_id, now)) is not None:
                rows[case["case_id"]] = case
        await self.svc.run(self.svc.sink.write, "cases", list(rows.values()))
        await self.svc.run(self.svc.sink.write, "case_decisions", list(decided.values()))
        await self.send.dead_letters(letters, REVIEW_DECISIONS_DLQ.name, now)
        if decided:
            log.info("%d review decision(s) applied: %s", len(decided),
                     ", ".join(sorted({d["status_after"] for d in decided.values()})))
        await self.send.audit([Processing(
            component="cases", activity="analyse", purpose="operations", data_classes=("PSEUDONYMOUS",),
            records=len(events), source=batch_source(events), destination="clickhouse:cases", key_id=key_id,
            detail=f"{len(rows)} case update(s), {len(decided)} decision(s), {len(letters)} refused, "
                   f"policy {self.policy.version}")])


def _decision_row(held: dict[str, Any]) -> dict[str, Any]:
    return {**held, "decided_at": datetime.fromtimestamp(held["decided_at"] / 1000, tz=UTC),
            "applied_at": datetime.fromtimestamp(held["applied_at"] / 1000, tz=UTC)}


@dataclass
class Handlers:
    """Every agent's handler, built once when the worker starts."""

    crossings: Ingest
    landings: Ingest
    dedup: Dedup
    links: Links
    rules: Rules
    link_decisions: LinkDecisions
    decisions: Decisions
    cases: Cases


def handlers(svc: Services, out: Outlets) -> Handlers:
    """The handlers over ``svc``, each with its own sender; rules, stay rules, model and thresholds are checked here."""
    dedup = Dedup(svc, out.sender("dedup_shards"), out.read)
    link_decisions = LinkDecisions(svc, out.sender("adjudications"))
    return Handlers(
        crossings=Ingest(svc, out.sender("ingest_crossings"), CROSSINGS, CROSSING_EVENTS_DLQ.name),
        landings=Ingest(svc, out.sender("ingest_landings"), LANDINGS, LANDING_EVENTS_DLQ.name),
        dedup=dedup, links=Links(svc, out.sender("dedup_links"), out.link_state, dedup),
        rules=Rules(svc, out.sender("trafficking_rules"), out.trafficking_state, out.stay_state),
        link_decisions=link_decisions, decisions=Decisions(svc, out.sender("review"), link_decisions),
        cases=Cases(svc, out.sender("cases"), out.case_state),
    )
