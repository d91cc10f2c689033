"""The pipeline end to end on its own real stack: nothing lost, nothing doubled, nothing identifying.

Each test produces simulated events, runs `lintas worker` as a real process and
counts rows in ClickHouse by event id, through FINAL and through the views.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from agents.privacy import policy
from infra.stack import Stack
from schemas.contracts import CROSSING_EVENT
from schemas.wire import encode_payload, frame
from streams import clients
from streams.clients import clickhouse_client, kafka_config
from streams.topics import (
    ALL_TOPICS,
    AUDIT_PROCESSING,
    BIOMETRIC_PROBES,
    CROSSING_EVENTS,
    CROSSING_EVENTS_DLQ,
    TRAFFICKING_FACTS,
    Role,
)
from tests.integration.conftest import migrated_stack
from tests.integration.pipeline_support import (
    Worker,
    load_ids,
    produce,
    row_counts,
    signed,
    simulate,
    view_total,
    wait_for,
)
from tests.integration.test_producer import _consume_all, _consume_messages

pytestmark = pytest.mark.integration

PORT_BASE = 26000  # below the ephemeral range (32768+), so no client socket can hold our ports


@pytest.fixture(scope="module")
def pstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from migrated_stack(tmp_path_factory, "pipeline", PORT_BASE)


@pytest.fixture
def worker(pstack: Stack, tmp_path: Path) -> Iterator[Worker]:
    w = Worker(pstack.settings, tmp_path / "worker.log")
    yield w
    w.stop()



def test_every_event_exactly_one_row_and_no_raw_identity(pstack: Stack, worker: Worker, tmp_path: Path) -> None:
    settings = pstack.settings
    n = 6_000
    records = simulate(31, n)
    produce(settings, records, tmp_path / "outbox.sqlite")
    worker.start()
    expected = load_ids(settings, [r["event_id"] for r in records])
    counts = wait_for(settings, expected, n, 180, worker.log)
    assert counts["final"] == n
    assert view_total(settings) == n  # the views count each event once, too

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
    client = clickhouse_client(settings)
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
    consumer = Consumer({**kafka_config(settings, Role.ADMIN), "group.id": "scan"})
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
    assert stored >= n
    audit = [json.loads(v) for _, _, _, v, _ in _consume_messages(settings, AUDIT_PROCESSING.name)]
    assert sum(r["records"] for r in audit if r["component"] == "ingest_crossings" and r["activity"] == "store"
               and r["purpose"] == "analytics") == stored
    assert {r["policy_version"] for r in audit} == {policy().version}

    # Regional export from this ClickHouse: cells, none below k, no token; a refused destination gets nothing.
    from agents.export import ExportRefused, smallest_cell
    from streams.ops.privacy import regional_export

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
    from streams.ops.breach import breach_report, render

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
    assert classes["DIRECT_IDENTIFIER"]["records"] >= n  # from the record of processing
    assert "notify subjects and the authority by" in render(report)


def test_worker_killed_mid_stream_loses_and_doubles_nothing(pstack: Stack, worker: Worker, tmp_path: Path) -> None:
    settings = pstack.settings
    before = view_total(settings)
    records = simulate(32, 10_000)
    expected = load_ids(settings, [r["event_id"] for r in records])
    worker.start()
    produce(settings, records, tmp_path / "outbox.sqlite")
    deadline = time.monotonic() + 120
    while row_counts(settings, expected)["distinct"] < 2_000 and time.monotonic() < deadline:
        time.sleep(0.2)
    mid = row_counts(settings, expected)["distinct"]
    worker.kill9()
    assert 0 < mid < 10_000, "the kill must fall mid-stream"
    worker.start()
    counts = wait_for(settings, expected, 10_000, 240, worker.log)
    assert counts["final"] == 10_000
    assert view_total(settings) - before == 10_000


def test_workers_joining_leaving_and_killed_while_20k_events_flow_lose_nothing(pstack: Stack, tmp_path: Path) -> None:
    """Rebalances under load: every few seconds a second worker joins, leaves, or either is killed.

    Without :mod:`streams.worker.faust_consumer`, faust committed offsets of events no stream had processed
    (76 consecutive crossings lost in one run of this test).
    """
    settings = pstack.settings
    records = simulate(35, 20_000)
    expected = load_ids(settings, [r["event_id"] for r in records])
    a, b = Worker(settings, tmp_path / "a.log"), Worker(settings, tmp_path / "b.log")
    a.start()
    producer = threading.Thread(target=produce, args=(settings, records, tmp_path / "outbox.sqlite"))
    producer.start()
    try:
        for step in range(8):
            time.sleep(9)
            if step % 2 == 0:
                b.start()  # joins: a rebalance
            elif step % 4 == 1:
                a.kill9()  # both die at once: the group waits out their sessions, then a rebalance
                b.kill9()
                a.start()
            else:
                b.stop()  # leaves cleanly: a rebalance
        producer.join()
        counts = wait_for(settings, expected, 20_000, 300, a.log)
        assert counts["final"] == 20_000
    finally:
        a.stop()
        b.stop()


def test_clickhouse_down_30s_mid_stream(pstack: Stack, worker: Worker, tmp_path: Path) -> None:
    settings = pstack.settings
    records = simulate(33, 6_000)
    expected = load_ids(settings, [r["event_id"] for r in records])
    worker.start()
    half = len(records) // 2  # in ClickHouse before the outage: the worker has joined and writes
    produce(settings, records[:half], tmp_path / "a.sqlite")
    wait_for(settings, expected, half, 120, worker.log)
    clickhouse = pstack.clickhouse.process()
    clickhouse.stop()
    try:
        produce(settings, records[half:], tmp_path / "b.sqlite")  # Kafka takes them while ClickHouse is down
        time.sleep(30)
        assert worker.proc is not None and worker.proc.poll() is None, "the worker must wait, not die"
    finally:
        clickhouse.start(timeout_s=60)
    counts = wait_for(settings, expected, len(records), 180, worker.log)
    assert counts["final"] == len(records)
    assert re.search(r"ClickHouse unavailable writing \w+ \(\w+\); trying again", worker.log.read_text())  # any agent


def test_poison_messages_go_to_the_dead_letter_topic(pstack: Stack, worker: Worker, tmp_path: Path) -> None:
    settings = pstack.settings
    records = simulate(34, 5_000)
    good = records[:4_950]
    produce(settings, good, tmp_path / "outbox.sqlite")
    # 1 % poison: wrong schema id, truncated bytes, invalid field values (valid Avro, bad country code).
    schema_id = int.from_bytes(_consume_all(settings)[0][2][1:5], "big")
    producer = Producer({**kafka_config(settings, Role.ADMIN), "acks": "all"})
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
        producer.produce(CROSSING_EVENTS.name, key=b"poison", value=value,
                         headers=signed(settings, r["post"]["post_id"], value))
        expected_codes.append(code)
    assert producer.flush(30) == 0

    worker.start()
    expected = load_ids(settings, [r["event_id"] for r in good])
    wait_for(settings, expected, 4_950, 180, worker.log)
    client = clickhouse_client(settings)
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
    leaked = load_ids(settings, poisoned_ids)
    assert row_counts(settings, leaked)["distinct"] == 0

    letters = _consume_all(settings, CROSSING_EVENTS_DLQ.name)
    assert len(letters) == 50

    from schemas.contracts import DEAD_LETTER
    from schemas.wire import SchemaIds, decode

    ids = SchemaIds(clients.registry(settings, Role.ADMIN))
    envelopes = [decode(v, DEAD_LETTER, ids) for _, _, v in letters]
    assert sorted(e["error_code"] for e in envelopes) == sorted(expected_codes)
    assert all(e["source_topic"] == CROSSING_EVENTS.name and e["payload"] for e in envelopes)
