"""The pipeline end to end on its own real stack: nothing lost, nothing doubled, nothing identifying.

Each test produces simulated events, runs `lintas worker` as a real process and
counts rows in ClickHouse by event id, through FINAL and through the views.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from agents.privacy import policy
from agents.pseudonymise import Tokeniser
from infra.clickhouse import admin_client
from infra.stack import Stack
from schemas.contracts import CROSSING_EVENT
from streams.producer import Forwarder, accept_records
from streams.settings import Settings
from streams.simulator import Simulator
from streams.spool import Spool
from streams.topics import (
    ALL_TOPICS,
    AUDIT_PROCESSING,
    BIOMETRIC_PROBES,
    CROSSING_EVENTS,
    CROSSING_EVENTS_DLQ,
    TRAFFICKING_FACTS,
)
from streams.wire import encode_payload, frame
from tests.conftest import REPO, settings_env
from tests.integration.conftest import migrated_stack
from tests.integration.test_producer import _consume_all, _consume_messages, _event_ids

pytestmark = pytest.mark.integration

PORT_BASE = 26000  # below the ephemeral range (32768+), so no client socket can hold our ports


@pytest.fixture(scope="module")
def pstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from migrated_stack(tmp_path_factory, "pipeline", PORT_BASE)


class Worker:
    """`lintas worker` as a real process in its own process group."""

    def __init__(self, settings: Settings, log: Path, env: dict[str, str] | None = None) -> None:
        self.settings, self.log = settings, log
        # _simulate's templates; every capture searchable, so only the planted poison is dead-lettered here
        self.env = {"LINTAS_DEDUP_DIMENSION": "32", "LINTAS_DEDUP_QUALITY_FLOOR": "0", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, **settings_env(self.settings), "LINTAS_SINK_BATCH_SIZE": "1000",
               "LINTAS_SINK_BATCH_SECONDS": "0.5", **self.env}
        self.proc = subprocess.Popen([str(Path(sys.executable).parent / "lintas"), "worker"], cwd=REPO, env=env,
                                     stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


@pytest.fixture
def worker(pstack: Stack, tmp_path: Path) -> Iterator[Worker]:
    w = Worker(pstack.settings, tmp_path / "worker.log")
    yield w
    w.stop()


def _simulate(seed: int, n: int) -> list[dict[str, Any]]:
    sim = Simulator(seed=seed, dim=32, days=1, end=datetime.now(UTC) - timedelta(hours=1), population=2000)
    return [r for kind, r in sim.events(n, landings=0) if kind == "crossing"]


def _produce(settings: Settings, records: list[dict[str, Any]], spool_path: Path) -> None:
    spool = Spool(spool_path)
    accept_records(records, "crossing", spool)
    forwarder = Forwarder(settings, spool)
    assert forwarder.pump(timeout_s=120)
    forwarder.close()


def _load_ids(client: Any, ids: list[str]) -> str:
    table = f"expected_{uuid.uuid4().hex[:8]}"
    client.command(f"CREATE TABLE {table} (event_id UUID) ENGINE = MergeTree ORDER BY event_id")  # survives restarts
    client.insert(table, [(i,) for i in ids], column_names=["event_id"])
    return table


def _counts(settings: Settings, expected: str) -> dict[str, int]:
    client = admin_client(settings)
    q = lambda sql: client.query(sql).result_rows[0][0]  # noqa: E731
    return {
        "final": q(f"SELECT count() FROM crossings FINAL WHERE event_id IN (SELECT event_id FROM {expected})"),
        "distinct": q(f"SELECT uniqExact(event_id) FROM crossings WHERE event_id IN (SELECT event_id FROM {expected})"),
        "raw": q(f"SELECT count() FROM crossings WHERE event_id IN (SELECT event_id FROM {expected})"),
    }


def _wait_for(settings: Settings, expected: str, n: int, timeout_s: float, log: Path) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    counts = _counts(settings, expected)
    while counts["distinct"] < n and time.monotonic() < deadline:
        time.sleep(1)
        counts = _counts(settings, expected)
    if counts["distinct"] != n:
        pytest.fail(f"{counts} after {timeout_s}s; {_missing(settings, expected)}; worker log tail:\n"
                    + log.read_text()[-3000:])
    return _counts(settings, expected)  # once more: "final" was read before the last rows landed


def _missing(settings: Settings, expected: str) -> str:
    """Where the expected events that have no row sit in the input topic, and what the group committed there."""
    client = admin_client(settings)
    missing = {str(r[0]) for r in client.query(
        f"SELECT event_id FROM {expected} WHERE event_id NOT IN (SELECT event_id FROM crossings)").result_rows}
    where = [(p, o) for _, _, p, o in _event_ids(settings, missing)]
    dead = client.query("SELECT count() FROM dead_letters WHERE source_topic = {t:String}",
                        parameters={"t": CROSSING_EVENTS.name}).result_rows[0][0]
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "lintas-pipeline"})
    parts = [TopicPartition(CROSSING_EVENTS.name, p) for p, _ in where]
    committed = {tp.partition: tp.offset for tp in consumer.committed(parts, timeout=10)} if parts else {}
    consumer.close()
    return (f"{len(missing)} missing at (partition, offset) {where[:20]}, {len(where)} found in the input topic; "
            f"group committed {committed}; {dead} dead letters from the input topic")


def _view_total(settings: Settings) -> int:
    client = admin_client(settings)
    return int(client.query("SELECT sum(n) FROM (SELECT uniqExactMerge(events) AS n FROM crossings_by_post_hour "
                            "GROUP BY post_country, post_id, direction, hour)").result_rows[0][0] or 0)


def test_10k_events_exactly_10k_rows_and_no_raw_identity(pstack: Stack, worker: Worker, tmp_path: Path) -> None:
    settings = pstack.settings
    records = _simulate(31, 10_000)
    _produce(settings, records, tmp_path / "outbox.sqlite")
    worker.start()
    expected = _load_ids(admin_client(settings), [r["event_id"] for r in records])
    counts = _wait_for(settings, expected, 10_000, 180, worker.log)
    assert counts["final"] == 10_000
    assert _view_total(settings) == 10_000  # the views count each event once, too

    # No raw document number, name or date of birth from the simulator in any ClickHouse table.
    raw_values: set[str] = set()
    for r in records:
        t = r["traveller"]
        raw_values |= {t["document"]["number"], f"{t['given_names']} {t['surname']}".strip(), t["given_names"]}
        if t["surname"]:
            raw_values.add(t["surname"])
        if t["date_of_birth"]:
            raw_values.add(t["date_of_birth"].isoformat())
        raw_values |= {c["document_number"] for c in r["companions"]}
    client = admin_client(settings)
    tables = [row[0] for row in client.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase() AND engine NOT LIKE '%View%'").result_rows]
    assert "crossings" in tables and len(tables) >= 5
    templates = [bytes(r["biometric"]["template"])[:16] for r in records if r["biometric"]][:500]
    for table in tables:
        text = client.raw_query(f"SELECT * FROM {table} FORMAT TSV").decode(errors="replace")
        values = {v.strip("[]'") for line in text.splitlines() for cell in line.split("\t") for v in cell.split(",")}
        leaked = raw_values & values
        assert not leaked, f"{table} holds {len(leaked)} raw identity value(s)"
        binary = client.raw_query(f"SELECT * FROM {table} FORMAT RowBinary")
        assert not any(t in binary for t in templates), f"{table} holds template bytes"
    # The scan can fail: the raw values are there to find in what the simulator produced.
    assert records[0]["traveller"]["document"]["number"] in raw_values

    # Nor in any topic but the restricted ones (input and its dead letters): keys, values and headers, in
    # every topic on the broker (Faust's changelogs, Kafka's own). Values of 8+ characters only, so the
    # random bytes of sealed templates cannot match one by chance.
    long_values = sorted(v.encode() for v in raw_values if len(v) >= 8)
    restricted = {t.name for t in ALL_TOPICS if t.restricted}
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "scan"})
    topics = sorted(consumer.list_topics(timeout=10).topics)
    consumer.close()
    scanned = {}
    for topic in topics:
        if topic in restricted:
            continue
        blob = b"\x00".join(b"\x00".join(m[2:]) for m in _consume_messages(settings, topic))
        leaked_values = [v for v in long_values if v in blob]
        assert not leaked_values, f"topic {topic} holds {len(leaked_values)} raw identity value(s)"
        assert not any(t in blob for t in templates), f"topic {topic} holds template bytes"
        scanned[topic] = len(blob)
    assert scanned.get(TRAFFICKING_FACTS.name, 0) > 0 and scanned.get(BIOMETRIC_PROBES.name, 0) > 0, scanned
    assert any(t.endswith("trafficking_state-changelog") for t in scanned), scanned
    # and the restricted topic does hold them: the same scan finds them there
    clear = b"".join(v for _, _, _, v, _ in _consume_messages(settings, CROSSING_EVENTS.name))
    documents = [r["traveller"]["document"]["number"].encode() for r in records[:200]]
    assert all(d in clear for d in documents) and all(len(d) >= 8 for d in documents)

    # Record of processing: every ingested row was recorded, in the table and on the audit topic.
    stored = client.query("SELECT sum(records) FROM processing_log WHERE component = 'ingest_crossings' "
                          "AND activity = 'store' AND purpose = 'analytics'").result_rows[0][0]
    assert stored >= 10_000
    audit = [json.loads(v) for _, _, _, v, _ in _consume_messages(settings, AUDIT_PROCESSING.name)]
    assert sum(r["records"] for r in audit if r["component"] == "ingest_crossings" and r["activity"] == "store"
               and r["purpose"] == "analytics") == stored
    assert {r["policy_version"] for r in audit} == {policy().version}

    # Regional export from this ClickHouse: cells, none below k, no token; a refused destination gets nothing.
    from agents.export import ExportRefused, smallest_cell
    from streams.privacy_ops import regional_export

    day = min(r["occurred_at"] for r in records).date()
    out = tmp_path / "export-mys.json"
    document = regional_export(settings, "MYS", None, day - timedelta(days=1), day + timedelta(days=1), out)
    assert sum(document["manifest"]["cells"].values()) > 0 and sum(document["manifest"]["suppressed"].values()) > 0
    assert smallest_cell(json.loads(out.read_text())) >= policy().export_k
    assert not re.search(r"[0-9a-f]{32}", out.read_text().replace(document["manifest"]["sha256"], ""))
    with pytest.raises(ExportRefused):
        regional_export(settings, "KHM", None, day, day, tmp_path / "export-khm.json")
    assert not (tmp_path / "export-khm.json").exists()
    refused = client.query("SELECT count() FROM processing_log WHERE component = 'regional_export' "
                           "AND outcome = 'refused' AND destination = 'partner:KHM'").result_rows[0][0]
    assert refused == 1

    # Breach report for the day: exactly the people the simulation sent, per data class.
    from agents.pseudonymise import age_band
    from streams.breach import breach_report, render

    def who(r: dict[str, Any]) -> tuple[str, ...]:
        doc = r["traveller"]["document"]
        return (doc["issuing_state"], doc["number"]) if doc else (r["traveller"]["given_names"], r["traveller"]["surname"])

    today = datetime.now(UTC).date()
    report = breach_report(settings, today - timedelta(days=1), today)
    classes = report["classes"]
    assert classes["DIRECT_IDENTIFIER"]["subjects"] == len({who(r) for r in records})
    assert classes["BIOMETRIC"]["subjects"] == len({who(r) for r in records if r["biometric"]}) > 0
    assert classes["CHILD"]["subjects"] == len({who(r) for r in records
                                               if age_band(r["traveller"]["date_of_birth"], r["occurred_at"])[1]})
    assert classes["CRIME_RECORD"]["subjects"] == len({who(r) for r in records if r["refused"]})
    assert classes["BIOMETRIC"]["specific"] and not classes["DIRECT_IDENTIFIER"]["specific"]
    assert classes["DIRECT_IDENTIFIER"]["records"] >= 10_000  # from the record of processing
    assert "notify subjects and the authority by" in render(report)


def test_worker_killed_mid_stream_loses_and_doubles_nothing(pstack: Stack, worker: Worker, tmp_path: Path) -> None:
    settings = pstack.settings
    before = _view_total(settings)
    records = _simulate(32, 10_000)
    expected = _load_ids(admin_client(settings), [r["event_id"] for r in records])
    worker.start()
    _produce(settings, records, tmp_path / "outbox.sqlite")
    deadline = time.monotonic() + 120
    while _counts(settings, expected)["distinct"] < 2_000 and time.monotonic() < deadline:
        time.sleep(0.2)
    mid = _counts(settings, expected)["distinct"]
    worker.kill9()
    assert 0 < mid < 10_000, "the kill must fall mid-stream"
    worker.start()
    counts = _wait_for(settings, expected, 10_000, 240, worker.log)
    assert counts["final"] == 10_000
    assert _view_total(settings) - before == 10_000


def test_workers_joining_leaving_and_killed_while_30k_events_flow_lose_nothing(pstack: Stack, tmp_path: Path) -> None:
    """Rebalances under load: every few seconds a second worker joins, leaves, or either is killed.

    Without :mod:`streams.faust_consumer`, faust committed offsets of events no stream had processed
    (76 consecutive crossings lost in one run of this test).
    """
    settings = pstack.settings
    records = _simulate(35, 30_000)
    expected = _load_ids(admin_client(settings), [r["event_id"] for r in records])
    a, b = Worker(settings, tmp_path / "a.log"), Worker(settings, tmp_path / "b.log")
    a.start()
    producer = threading.Thread(target=_produce, args=(settings, records, tmp_path / "outbox.sqlite"))
    producer.start()
    try:
        for step in range(8):
            time.sleep(12)
            if step % 2 == 0:
                b.start()  # joins: a rebalance
            elif step % 4 == 1:
                a.kill9()  # both die at once: the group waits out their sessions, then a rebalance
                b.kill9()
                a.start()
            else:
                b.stop()  # leaves cleanly: a rebalance
        producer.join()
        counts = _wait_for(settings, expected, 30_000, 300, a.log)
        assert counts["final"] == 30_000
    finally:
        a.stop()
        b.stop()


def test_clickhouse_down_30s_mid_stream(pstack: Stack, worker: Worker, tmp_path: Path) -> None:
    settings = pstack.settings
    records = _simulate(33, 10_000)
    expected = _load_ids(admin_client(settings), [r["event_id"] for r in records])
    worker.start()
    time.sleep(8)  # the worker joins the group
    half = len(records) // 2
    _produce(settings, records[:half], tmp_path / "a.sqlite")
    _wait_for(settings, expected, half, 120, worker.log)
    clickhouse = pstack.clickhouse.process()
    clickhouse.stop()
    try:
        _produce(settings, records[half:], tmp_path / "b.sqlite")  # Kafka takes them while ClickHouse is down
        time.sleep(30)
        assert worker.proc is not None and worker.proc.poll() is None, "the worker must wait, not die"
    finally:
        clickhouse.start(timeout_s=60)
    counts = _wait_for(settings, expected, 10_000, 180, worker.log)
    assert counts["final"] == 10_000
    assert re.search(r"ClickHouse write to \w+ failed", worker.log.read_text())  # ingest or dedup, whichever hit first


def test_poison_messages_go_to_the_dead_letter_topic(pstack: Stack, worker: Worker, tmp_path: Path) -> None:
    settings = pstack.settings
    records = _simulate(34, 5_000)
    good = records[:4_950]
    _produce(settings, good, tmp_path / "outbox.sqlite")
    # 1 % poison: wrong schema id, truncated bytes, invalid field values (valid Avro, bad country code).
    schema_id = int.from_bytes(_consume_all(settings)[0][2][1:5], "big")
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all"})
    expected_codes: list[str] = []
    for i, r in enumerate(records[4_950:]):
        payload = encode_payload(CROSSING_EVENT, r)
        if i % 3 == 0:
            value, code = frame(987_654, payload), "unknown_schema"
        elif i % 3 == 1:
            value, code = frame(schema_id, payload)[: 5 + len(payload) // 3], "truncated"
        else:
            bad = {**r, "post": {**r["post"], "country": "Indonesia"}}
            value, code = frame(schema_id, encode_payload(CROSSING_EVENT, bad)), "invalid_country"
        producer.produce(CROSSING_EVENTS.name, key=b"poison", value=value)
        expected_codes.append(code)
    assert producer.flush(30) == 0

    worker.start()
    expected = _load_ids(admin_client(settings), [r["event_id"] for r in good])
    _wait_for(settings, expected, 4_950, 180, worker.log)
    client = admin_client(settings)
    deadline = time.monotonic() + 60
    rows: list[tuple[Any, ...]] = []
    while time.monotonic() < deadline:
        rows = client.query("SELECT error_code, error_field FROM dead_letters FINAL "
                            "WHERE source_topic = {t:String} AND produced_at > now() - INTERVAL 1 HOUR",
                            parameters={"t": CROSSING_EVENTS.name}).result_rows
        if len(rows) >= 50:
            break
        time.sleep(1)
    assert sorted(code for code, _ in rows) == sorted(expected_codes)
    assert {field for code, field in rows if code == "invalid_country"} == {"post.country"}
    poisoned_ids = [r["event_id"] for r in records[4_950:]]
    leaked = _load_ids(client, poisoned_ids)
    assert _counts(settings, leaked)["distinct"] == 0

    letters = _consume_all(settings, CROSSING_EVENTS_DLQ.name)
    assert len(letters) == 50
    from confluent_kafka.schema_registry import SchemaRegistryClient

    from schemas.contracts import DEAD_LETTER
    from streams.wire import SchemaIds, decode

    ids = SchemaIds(SchemaRegistryClient({"url": settings.schema_registry_url}))
    envelopes = [decode(v, DEAD_LETTER, ids) for _, _, v in letters]
    assert sorted(e["error_code"] for e in envelopes) == sorted(expected_codes)
    assert all(e["source_topic"] == CROSSING_EVENTS.name and e["payload"] for e in envelopes)


def _crossing(doc: str, at: datetime, post: tuple[str, str], escort: str | None = None, minor: bool = False,
              n: int = 0) -> dict[str, Any]:
    """A literal synthetic crossing (exit from Indonesia), optionally escorted by ``escort``."""
    born = (at - timedelta(days=int((15 if minor else 30) * 365.25))).date()
    return {
        "event_id": str(uuid.uuid4()), "occurred_at": at,
        "post": {"post_id": post[0], "post_type": post[1], "country": "IDN"}, "direction": "EXIT",
        "traveller": {"document": {"document_type": "PASSPORT", "number": doc, "issuing_state": "IDN",
                                   "expiry_date": None},
                      "given_names": f"Synthetic{n}", "surname": "Traveller", "date_of_birth": born, "sex": "F",
                      "nationality": "IDN"},
        "travel_purpose": "TOURISM", "visa_type": None, "placement_id": None, "sponsor": None,
        "companions": [{"document_number": escort, "document_issuing_state": "IDN", "relationship": "UNRELATED",
                        "is_escort": True}] if escort else [],
        "carrier": None, "origin_country": "IDN", "destination_country": "MYS", "refused": False,
        "refusal_reason": None, "officer_id": "OFF-IDN-0100", "biometric": None,
    }


def _changelog_messages(settings: Settings) -> int:
    from confluent_kafka import Consumer

    from streams.topics import TRAFFICKING_FACTS

    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"probe-{uuid.uuid4().hex[:6]}"})
    try:
        topic = "lintas-pipeline-trafficking_state-changelog"
        total = 0
        for p in range(TRAFFICKING_FACTS.partitions):
            try:
                total += consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1]
            except Exception:  # noqa: BLE001 - the changelog topic appears with the first table write
                return 0
        return total
    finally:
        consumer.close()


def test_rule_windows_survive_a_worker_kill(pstack: Stack, worker: Worker, tmp_path: Path) -> None:
    """Half a fan-out and half an impossible journey, kill -9, the other halves: the alerts of an unbroken run."""
    from agents.pseudonymise import crossing_row
    from agents.trafficking import crossing_facts, latest, load_rules, run

    settings = pstack.settings
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=12)
    escort, runner = f"E{uuid.uuid4().int % 10**7:07d}", f"J{uuid.uuid4().int % 10**7:07d}"
    travellers = [f"T{uuid.uuid4().int % 10**7:07d}" for _ in range(6)]
    first = [_crossing(doc, t0 + timedelta(hours=i), ("ID-ETK", "LAND"), escort, minor=i == 1, n=i)
             for i, doc in enumerate(travellers[:3])] + [_crossing(runner, t0, ("ID-CGK", "AIR"), n=9)]
    second = [_crossing(doc, t0 + timedelta(hours=3 + i), ("ID-ETK", "LAND"), escort, n=3 + i)
              for i, doc in enumerate(travellers[3:])] + [_crossing(runner, t0 + timedelta(hours=1), ("ID-ETK", "LAND"),
                                                                    n=9)]
    before = _changelog_messages(settings)
    worker.start()
    _produce(settings, first, tmp_path / "a.sqlite")
    deadline = time.monotonic() + 120
    while _changelog_messages(settings) - before < 7 and time.monotonic() < deadline:  # 4 own + 3 escort facts
        time.sleep(0.5)
    assert _changelog_messages(settings) - before >= 7, worker.log.read_text()[-3000:]
    time.sleep(4)  # offsets committed (every 1 s): after the kill, the windows can only come back from the changelog
    client = admin_client(settings)
    assert client.query(f"SELECT count() FROM alerts WHERE key_token != '' AND has(subjects, "
                        f"'{_token(settings, escort)}')").result_rows[0][0] == 0, "below the threshold so far"
    worker.kill9()

    worker.start()
    _produce(settings, second, tmp_path / "b.sqlite")
    tok = _operations(settings)
    facts = [f for r in first + second for f in crossing_facts(r, crossing_row(r, tok), tok)]
    facts.sort(key=lambda f: f.occurred_at)
    expected = latest(run(facts, load_rules())[1])  # the unbroken run
    assert {a.rule_id for a in expected.values()} >= {"escort_fanout", "impossible_travel", "minor_unrelated_adult"}
    ids = ", ".join(f"'{a}'" for a in expected)
    deadline = time.monotonic() + 120
    got: dict[str, tuple[Any, ...]] = {}
    want = {a.alert_id: (a.rule_id, a.severity, sorted(a.evidence_event_ids), sorted(a.subjects))
            for a in expected.values()}
    while got != want and time.monotonic() < deadline:
        time.sleep(1)
        rows = client.query(f"SELECT alert_id, rule_id, severity, evidence_event_ids, subjects FROM alerts FINAL "
                            f"WHERE alert_id IN ({ids})").result_rows
        got = {r[0]: (r[1], r[2], sorted(r[3]), sorted(r[4])) for r in rows}
    assert got == want, worker.log.read_text()[-3000:]
    fan = next(v for v in want.values() if v[0] == "escort_fanout")
    assert len(fan[2]) == 6 and fan[1] == "HIGH", "all six travellers, across the restart; a minor among them"


def _operations(settings: Settings) -> Tokeniser:
    """The operations tokeniser of the stack's key file (shared with the worker)."""
    from agents.keys import FileKeyring, tokeniser

    return tokeniser(FileKeyring(settings.keyring_path), "operations")


def _token(settings: Settings, doc: str) -> str:
    from agents.pseudonymise import document_token

    return document_token(_operations(settings), "IDN", doc)


def _until(check: Any, timeout_s: float, log: Path) -> Any:
    """Poll ``check()`` until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    while not (result := check()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert result, f"not reached in {timeout_s}s; worker log tail:\n" + log.read_text()[-3000:]
    return result


def _face(rng: Any, face: Any | None = None) -> dict[str, Any]:
    import numpy as np

    base = face if face is not None else rng.standard_normal(32)
    vec = base + (0.05 * rng.standard_normal(32) if face is not None else 0)
    vec = (vec / np.linalg.norm(vec)).astype("<f4")
    return {"modality": "FACE", "template": vec.tobytes(), "dimension": 32, "quality": 0.9,
            "capture_device": "SIM-CAM"}


def test_erase_leaves_no_row_or_readable_copy_of_the_person_and_the_others_untouched(
        pstack: Stack, worker: Worker, tmp_path: Path) -> None:
    """An escort with five travellers; erase one traveller (with a biometric enrolment), keep everyone else."""
    import numpy as np

    from agents.keys import FileKeyring, tokeniser
    from agents.pseudonymise import document_token
    from agents.sealing import KeyDestroyed, SealError, SqliteSubjectKeys, SubjectSealer
    from agents.vault import open_entry
    from streams.erasure import ErasureHeld, erase
    from streams.privacy_ops import NotInVault, resolve_identity
    from streams.topics import ALERTS, BIOMETRIC_GALLERY, IDENTITY_VAULT

    settings = pstack.settings
    rng = np.random.default_rng(77)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)
    escort = f"E{uuid.uuid4().int % 10**7:07d}"
    docs = [f"V{uuid.uuid4().int % 10**7:07d}" for _ in range(5)]
    gone, kept = docs[2], docs[3]
    faces = {gone: rng.standard_normal(32), kept: rng.standard_normal(32)}
    records = [_crossing(doc, t0 + timedelta(hours=i), ("ID-ETK", "LAND"), escort, n=i) for i, doc in enumerate(docs)]
    for r in records:
        doc = r["traveller"]["document"]["number"]
        if doc in faces:
            r["biometric"] = _face(rng, faces[doc])
    # their captures' model is uncalibrated: each stays under its document, and no link joins them to the
    # thousands of random 32-value faces the tests before enrolled
    worker.start()
    _produce(settings, records, tmp_path / "a.sqlite")
    client = admin_client(settings)
    ops = tokeniser(FileKeyring(settings.keyring_path), "operations")
    analytics = tokeniser(FileKeyring(settings.keyring_path), "analytics")
    gone_ops, kept_ops = document_token(ops, "IDN", gone), document_token(ops, "IDN", kept)
    gone_an = document_token(analytics, "IDN", gone)
    escort_ops = document_token(ops, "IDN", escort)
    ids = ", ".join(f"'{r['event_id']}'" for r in records)
    _until(lambda: client.query(f"SELECT count() FROM dedup_decisions WHERE event_id IN ({ids})").result_rows[0][0]
           == 2 and client.query(f"SELECT count() FROM alerts FINAL WHERE key_token = '{escort_ops}' AND "
                                 f"has(subjects, '{gone_ops}')").result_rows[0][0] == 1,
           420, worker.log)  # the worker may first finish probes the tests before left in flight
    subject = client.query(f"SELECT subject_id FROM dedup_decisions WHERE identity_token = '{gone_ops}'"
                           ).result_rows[0][0]
    alert_id = client.query(f"SELECT alert_id FROM alerts FINAL WHERE key_token = '{escort_ops}'").result_rows[0][0]
    others_before = client.query(f"SELECT count() FROM crossings FINAL WHERE event_id IN ({ids})").result_rows[0][0]
    assert others_before == 5

    # the escort is the subject of an alert: not erased without a recorded basis (and the refusal is audited)
    with pytest.raises(ErasureHeld):
        erase(settings, f"IDN:{escort}", proof_dir=tmp_path)
    proof = erase(settings, f"IDN:{gone}", proof_dir=tmp_path)
    assert proof["verified"] and proof["keys_destroyed"] == {"person": 1, "subject": 0}  # templates: the person's key
    before = proof["clickhouse_rows_before"]  # physical rows: a replayed batch's copy not yet merged counts too
    assert before["crossings.delete"] >= 1 and before["dedup_decisions.delete"] >= 1
    assert before["alerts.anonymise"] >= 1 and before["crossings.anonymise"] == 0  # they escorted nobody
    assert proof["remaining_until_retention"]["messages"] == 1 and proof["biometric_subjects"] == 1
    assert json.loads((tmp_path / f"{proof['erasure_id']}.json").read_text())["sha256"] == proof["sha256"]
    assert gone not in json.dumps(proof) and gone_ops not in json.dumps(proof)

    # no ClickHouse row names them: every table, every column
    tables = [row[0] for row in client.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase() AND engine NOT LIKE '%View%'").result_rows]
    for table in tables:
        text = client.raw_query(f"SELECT * FROM {table} FORMAT TSV").decode(errors="replace")
        assert not any(ref in text for ref in (gone_ops, gone_an, subject)), f"{table} still names the person"
    # the others are untouched: four crossings, the other traveller's decision, the escort's alert (four travellers)
    assert client.query(f"SELECT count() FROM crossings FINAL WHERE event_id IN ({ids})").result_rows[0][0] == 4
    assert client.query(f"SELECT count() FROM dedup_decisions WHERE identity_token = '{kept_ops}'"
                        ).result_rows[0][0] == 1
    subjects = client.query(f"SELECT subjects FROM alerts FINAL WHERE alert_id = '{alert_id}'").result_rows[0][0]
    assert len([s for s in subjects if s != escort_ops]) == 4 and gone_ops not in subjects

    # no readable copy: every vault and gallery record of theirs fails to open; the kept traveller's still open
    sealer = SubjectSealer(SqliteSubjectKeys(settings.subject_keys_path))
    vault = _consume_messages(settings, IDENTITY_VAULT.name)
    theirs = [v for _, _, k, v, _ in vault if k == gone_ops.encode()]
    assert theirs and theirs[-1] == b"", "the last vault record of theirs is a tombstone"
    for value in theirs[:-1]:
        with pytest.raises(KeyDestroyed):
            open_entry(sealer, gone_ops, value)
    assert resolve_identity(settings, kept_ops, "A-test")["document"]["number"] == kept  # operations still can
    with pytest.raises(NotInVault):
        resolve_identity(settings, gone_ops, "A-test")
    gallery = _consume_messages(settings, BIOMETRIC_GALLERY.name)
    from agents.biometric import IDENTITY_RECORD, read

    record_key = f"unspecified|{gone_ops}".encode()
    assert [v for _, _, k, v, _ in gallery if k == record_key][-1] == b""
    opened = {"destroyed": 0, "open": 0}
    for _, _, key, value, _ in gallery:
        if value:
            rec = read(IDENTITY_RECORD, value)
            for c in rec["window"]:
                try:
                    sealer.open_one(c["sealed_template"], c["probe_id"])
                    opened["open"] += 1
                    assert key != record_key
                except SealError:
                    opened["destroyed"] += 1
                    assert key == record_key
    assert opened["destroyed"] >= 1 and opened["open"] >= 1
    # the escort's alert on Kafka no longer names them (the latest copy of it)
    alerts = [v for _, _, k, v, _ in _consume_messages(settings, ALERTS.name) if k == alert_id.encode()]
    assert gone_ops.encode() in alerts[0] and gone_ops.encode() not in alerts[-1]
    # the rule state of theirs is gone from the changelog (tombstone), and the running shards forgot the face
    _until(lambda: [v for _, _, k, v, _ in _consume_messages(
        settings, "lintas-pipeline-trafficking_state-changelog") if k == f"doc:{gone_ops}".encode()][-1] == b"",
        60, worker.log)
    again = _crossing(gone, t0 + timedelta(hours=5), ("ID-ETK", "LAND"), n=9)
    again["biometric"] = _face(rng, faces[gone])
    _produce(settings, [again], tmp_path / "b.sqlite")
    outcome = _until(lambda: client.query(f"SELECT outcome, subject_id FROM dedup_decisions WHERE event_id = "
                                          f"'{again['event_id']}'").result_rows, 300, worker.log)
    assert outcome[0][0] == "enrol", "an erased face is not recognised again: enrolled anew"
    audit_rows = client.query("SELECT outcome, count() FROM processing_log WHERE component = 'erasure' "
                              "AND activity = 'delete' GROUP BY outcome ORDER BY outcome").result_rows
    assert audit_rows == [("ok", 1), ("refused", 1)]
    assert client.query("SELECT count() FROM processing_log WHERE component = 'identity_vault' "
                        "AND activity = 'disclose' AND detail = 'case A-test'").result_rows[0][0] == 1


def test_every_dashboard_panel_returns_its_shape_and_the_preview_draws_them(
        pstack: Stack, worker: Worker, tmp_path: Path) -> None:
    """Every panel's SQL, expanded as Grafana would, on ClickHouse filled by a simulation; then drawn in Chromium."""
    import shutil

    from agents.dedup import ModelThresholds, ThresholdSet
    from dashboards.browser import rendered_dom, screenshot
    from dashboards.lintas import DASHBOARDS
    from dashboards.render import render
    from infra.clickhouse import readonly_client

    settings = pstack.settings
    records = _simulate(36, 10_000)  # enough on its own for k: 23 refusals, at least 12 on one of its two days
    # 32-value faces are no real model: thresholds that let a few links through, so the link panels have rows
    from streams.dedup_ops import record

    thresholds = tmp_path / "thresholds.json"
    panels = ThresholdSet.load().with_model(ModelThresholds(
        "sim-clustered/1-d32", "t-panels", verify=0.3, mismatch=-1.0, yellow=0.74, red=0.76, pair_floor=0.72,
        calibration={"targets": {"fpir": 0.003}, "fnir_estimate": 0.5, "genuine_median": 0.5}), "t-panels")
    thresholds.write_text(panels.to_json())
    record(settings, panels, ["sim-clustered/1-d32"], datetime.now(UTC))  # what the accuracy panels compare with
    worker.env["LINTAS_DEDUP_THRESHOLDS"] = str(thresholds)
    _produce(settings, records, tmp_path / "outbox.sqlite")
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all"})
    for r in records[:15]:  # a few dead letters for the health dashboard
        producer.produce(CROSSING_EVENTS.name, key=b"poison", value=frame(987_654, encode_payload(CROSSING_EVENT, r)))
    assert producer.flush(30) == 0
    worker.start()
    expected = _load_ids(admin_client(settings), [r["event_id"] for r in records])
    _wait_for(settings, expected, 10_000, 180, worker.log)
    client = admin_client(settings)
    ids = f"SELECT toString(event_id) FROM {expected}"
    _until(lambda: client.query(f"SELECT count() FROM dedup_decisions WHERE toString(event_id) IN ({ids})"
                                ).result_rows[0][0] > 0 and
           client.query("SELECT count() FROM dedup_links").result_rows[0][0] > 0 and
           client.query("SELECT count() FROM dead_letters WHERE ingested_at > now() - INTERVAL 1 HOUR"
                        ).result_rows[0][0] > 0, 180, worker.log)

    out = tmp_path / "preview"
    drawn = render(readonly_client(settings), out, datetime.now(UTC) - timedelta(hours=26))  # read-only user
    assert len(drawn) == sum(len(d.panels) for d in DASHBOARDS) >= 25
    broken = [f"{d.dashboard} / {d.panel}: {'; '.join(d.errors)}\n{d.sql}" for d in drawn if d.errors]
    assert not broken, "\n\n".join(broken)

    dom = rendered_dom(out / "index.html")
    assert f'data-panels-drawn="{len(drawn)}"' in dom, re.findall(r'data-panels-drawn="\d+"', dom)
    assert dom.count('data-drawn="yes"') == len(drawn)
    png = screenshot(out / "index.html", out / "preview.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 100_000
    keep = REPO / ".lintas" / "artifacts" / "dashboards"  # for a person to look at after the run
    shutil.rmtree(keep, ignore_errors=True)
    shutil.copytree(out, keep)
