"""What the pipeline makes for people, end to end on its own real stack: alerts that survive a crash,
an erasure that leaves nothing readable, and every dashboard panel on a ClickHouse the pipeline filled.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer, TopicPartition

from agents.pseudonymise import Tokeniser
from infra.stack import Stack
from schemas.contracts import CROSSING_EVENT
from schemas.wire import encode_payload, frame
from streams.clients import clickhouse_client, kafka_config
from streams.ops.lag import NotCaughtUp, caught_up
from streams.settings import Settings
from streams.topics import CROSSING_EVENTS, Role
from tests.conftest import REPO
from tests.integration.conftest import migrated_stack
from tests.integration.pipeline_support import Worker, load_ids, produce, signed, simulate, until, wait_for
from tests.integration.test_producer import _consume_messages

pytestmark = pytest.mark.integration

PORT_BASE = 24000  # below the ephemeral range (32768+), so no client socket can hold our ports


@pytest.fixture(scope="module")
def ostack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from migrated_stack(tmp_path_factory, "outputs", PORT_BASE)


@pytest.fixture
def worker(ostack: Stack, tmp_path: Path) -> Iterator[Worker]:
    w = Worker(ostack.settings, tmp_path / "worker.log")
    yield w
    w.stop()


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

    consumer = Consumer({**kafka_config(settings, Role.ADMIN), "group.id": f"probe-{uuid.uuid4().hex[:6]}"})
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


def test_rule_windows_survive_a_worker_kill(ostack: Stack, worker: Worker, tmp_path: Path) -> None:
    """Half a fan-out and half an impossible journey, kill -9, the other halves: the alerts of an unbroken run."""
    from agents.pseudonymise import crossing_row
    from agents.trafficking.config import load_rules
    from agents.trafficking.engine import latest, run
    from agents.trafficking.facts import crossing_facts

    settings = ostack.settings
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
    produce(settings, first, tmp_path / "a.sqlite")
    # ingest and rules committed everything: their state is in the changelog (written before each commit), so
    # after the kill the windows can only come back from it
    try:
        caught_up(settings, ("ingest_crossings", "trafficking_rules"), timeout_s=120)
    except NotCaughtUp as e:
        pytest.fail(f"{e}\n{worker.log.read_text()[-3000:]}")
    assert _changelog_messages(settings) > before
    client = clickhouse_client(settings)
    assert client.query(f"SELECT count() FROM alerts WHERE rule_id = 'escort_fanout' AND has(subjects, "
                        f"'{_token(settings, escort)}')").result_rows[0][0] == 0, "three of four: below the threshold"
    worker.kill9()

    worker.start()
    produce(settings, second, tmp_path / "b.sqlite")
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
    from agents.keys import tokeniser
    from streams.keystores import FileKeyring

    return tokeniser(FileKeyring(settings.keyring_path), "operations")


def _token(settings: Settings, doc: str) -> str:
    from agents.pseudonymise import document_token

    return document_token(_operations(settings), "IDN", doc)


def _face(rng: Any, face: Any | None = None) -> dict[str, Any]:
    import numpy as np

    base = face if face is not None else rng.standard_normal(32)
    vec = base + (0.05 * rng.standard_normal(32) if face is not None else 0)
    vec = (vec / np.linalg.norm(vec)).astype("<f4")
    return {"modality": "FACE", "template": vec.tobytes(), "dimension": 32, "quality": 0.9,
            "capture_device": "SIM-CAM"}


def test_erase_leaves_no_row_or_readable_copy_of_the_person_and_the_others_untouched(
        ostack: Stack, worker: Worker, tmp_path: Path) -> None:
    """An escort with five travellers; erase one traveller (with a biometric enrolment), keep everyone else."""
    import numpy as np

    from agents.keys import tokeniser
    from agents.pseudonymise import document_token
    from agents.sealing import KeyDestroyed, SealError, SubjectSealer
    from agents.vault import open_entry
    from streams.keystores import FileKeyring, SqliteSubjectKeys
    from streams.ops.erasure import ErasureHeld, erase
    from streams.ops.privacy import NotInVault, resolve_identity
    from streams.topics import ALERTS, BIOMETRIC_GALLERY, IDENTITY_VAULT

    settings = ostack.settings
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
    # their captures' model is uncalibrated: each stays under its document, and no link joins them to any
    # other 32-value face on this stack
    worker.start()
    produce(settings, records, tmp_path / "a.sqlite")
    client = clickhouse_client(settings)
    ops = tokeniser(FileKeyring(settings.keyring_path), "operations")
    analytics = tokeniser(FileKeyring(settings.keyring_path), "analytics")
    gone_ops, kept_ops = document_token(ops, "IDN", gone), document_token(ops, "IDN", kept)
    gone_an = document_token(analytics, "IDN", gone)
    escort_ops = document_token(ops, "IDN", escort)
    ids = ", ".join(f"'{r['event_id']}'" for r in records)
    until(lambda: client.query(f"SELECT count() FROM dedup_decisions WHERE event_id IN ({ids})").result_rows[0][0]
          == 2 and client.query(f"SELECT count() FROM alerts FINAL WHERE key_token = '{escort_ops}' AND "
                                f"has(subjects, '{gone_ops}')").result_rows[0][0] == 1
          and client.query(f"SELECT count() FROM crossings FINAL WHERE event_id IN ({ids})").result_rows[0][0] == 5,
          240, worker.log)  # rows, decisions and alerts come from three agents, in any order
    try:  # and the cases agent has opened the escort's case: the erasure meets no row still on its way
        caught_up(settings, timeout_s=240)
    except NotCaughtUp as e:
        pytest.fail(f"{e}\n{worker.log.read_text()[-3000:]}")
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
    index = proof["gallery_index"]  # every shard took the face out of its 1:N index, and a scan found none left
    assert index["shards_confirmed"] == index["shards"] and index["rows_removed"] >= 1, index
    assert index["shards_with_rows_left"] == 0
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
    from agents.shard import IDENTITY_RECORD, read

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
    until(lambda: [v for _, _, k, v, _ in _consume_messages(
        settings, "lintas-pipeline-trafficking_state-changelog") if k == f"doc:{gone_ops}".encode()][-1] == b"",
        60, worker.log)
    again = _crossing(gone, t0 + timedelta(hours=5), ("ID-ETK", "LAND"), n=9)
    again["biometric"] = _face(rng, faces[gone])
    produce(settings, [again], tmp_path / "b.sqlite")
    outcome = until(lambda: client.query(f"SELECT outcome, subject_id FROM dedup_decisions WHERE event_id = "
                                          f"'{again['event_id']}'").result_rows, 300, worker.log)
    assert outcome[0][0] == "enrol", "an erased face is not recognised again: enrolled anew"
    audit_rows = client.query("SELECT outcome, count() FROM processing_log WHERE component = 'erasure' "
                              "AND activity = 'delete' GROUP BY outcome ORDER BY outcome").result_rows
    assert audit_rows == [("ok", 1), ("refused", 1)]
    assert client.query("SELECT count() FROM processing_log WHERE component = 'identity_vault' "
                        "AND activity = 'disclose' AND detail = 'case A-test'").result_rows[0][0] == 1


def test_review_decisions_arrive_by_topic_survive_a_kill_and_a_replay_changes_nothing(
        ostack: Stack, worker: Worker, tmp_path: Path) -> None:
    """An escort with five travellers, one a minor: two cases; officers decide through review.decisions."""
    from agents.cases import case_id
    from streams.ops.review import send_decision

    settings = ostack.settings
    client = clickhouse_client(settings)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=8)
    escort = f"E{uuid.uuid4().int % 10**7:07d}"
    travellers = [f"R{uuid.uuid4().int % 10**7:07d}" for _ in range(5)]
    records = [_crossing(doc, t0 + timedelta(hours=i), ("ID-ETK", "LAND"), escort, minor=i == 2, n=i)
               for i, doc in enumerate(travellers)]
    escort_case, minor_case = (case_id(f"doc:{_token(settings, d)}") for d in (escort, travellers[2]))

    def cases() -> dict[str, tuple[str, int, int]]:
        rows = client.query("SELECT case_id, status, version, decisions FROM cases FINAL WHERE case_id IN "
                            "{ids:Array(String)}", parameters={"ids": [escort_case, minor_case]}).result_rows
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def decide(target: str, action: str, **kw: Any) -> str:
        return send_decision(settings, target_kind="CASE", target_id=target, action=action,
                             officer_id="OFFICER-TEST-1", officer_role="reviewer", post_id="ID-ETK", **kw)

    worker.start()
    produce(settings, records, tmp_path / "a.sqlite")

    def escort_row() -> tuple[Any, ...] | None:
        rows = client.query("SELECT severity, rules, post_ids, length(evidence_event_ids) FROM cases FINAL "
                            "WHERE case_id = {c:String}", parameters={"c": escort_case}).result_rows
        return rows[0] if rows and rows[0][3] == 5 else None

    until(lambda: escort_row() and {s for s, _, _ in cases().values()} == {"OPEN"} and len(cases()) == 2, 120,
          worker.log)
    row = escort_row()
    assert row is not None and row[0] == "HIGH" and "escort_fanout" in row[1] and row[2] == ["ID-ETK"]

    started = decide(escort_case, "START_REVIEW")
    decide(minor_case, "REFER", pathway="CHILD_PROTECTION")
    until(lambda: {k: v[0] for k, v in cases().items()} == {escort_case: "IN_REVIEW", minor_case: "REFERRED"},
          120, worker.log)
    decide(escort_case, "CONFIRM")
    worker.kill9()  # the decision may or may not have been applied and committed: either way it is applied once
    worker.start()
    until(lambda: cases()[escort_case][0] == "CONFIRMED", 180, worker.log)
    version = cases()[escort_case][1]

    # replayed (the same decision id) and not-allowed decisions change nothing; bad ones are dead-lettered
    decide(escort_case, "START_REVIEW", decision_id=started)
    decide(minor_case, "DISMISS", reason_code="EXPLAINED_FAMILY")
    decide(case_id("doc:no-such-token"), "CONFIRM")
    decide(escort_case, "REFER", pathway="VICTIM_ASSISTANCE")  # the marker: applied after the two above
    until(lambda: cases()[escort_case][0] == "REFERRED", 120, worker.log)
    assert cases() == {escort_case: ("REFERRED", version + 1, 3), minor_case: ("REFERRED", cases()[minor_case][1], 1)}
    history = client.query("SELECT action, status_after, pathway FROM case_decisions FINAL WHERE case_id = "
                           "{c:String} ORDER BY decided_at", parameters={"c": escort_case}).result_rows
    assert history == [("START_REVIEW", "IN_REVIEW", ""), ("CONFIRM", "CONFIRMED", ""),
                       ("REFER", "REFERRED", "VICTIM_ASSISTANCE")]
    until(lambda: client.query("SELECT groupUniqArray(error_code) FROM dead_letters WHERE source_topic = "
                               "'review.cases'").result_rows[0][0] and
          {"not_allowed", "unknown_case"} <= set(client.query(
              "SELECT groupUniqArray(error_code) FROM dead_letters WHERE source_topic = 'review.cases'"
          ).result_rows[0][0]), 60, worker.log)
    precision = dict(client.query("SELECT rule_id, precision FROM rule_precision").result_rows)
    assert precision.get("escort_fanout") == 1.0


def test_every_dashboard_panel_returns_its_shape_and_the_preview_draws_them(
        ostack: Stack, worker: Worker, tmp_path: Path) -> None:
    """Every panel's SQL, expanded as Grafana would, on ClickHouse filled by a simulation; then drawn in Chromium."""
    import shutil

    from agents.dedup import ModelThresholds, ThresholdSet
    from dashboards.browser import rendered_dom, screenshot
    from dashboards.lintas import DASHBOARDS
    from dashboards.render import render
    from streams.clients import clickhouse_client

    settings = ostack.settings
    records = simulate(36, 10_000)
    # refusals enough for k on the busier of the window's two days, whatever the time of day the test runs
    # (the simulator's own few depend on the window's end: 7 to 15 for the same seed)
    for r in [r for r in records if r["direction"] == "ENTRY"][::50][:60]:
        r["refused"], r["refusal_reason"] = True, "INSUFFICIENT_MEANS"
    # 32-value faces are no real model: thresholds that let a few links through, so the link panels have rows
    from streams.ops.dedup import record

    thresholds = tmp_path / "thresholds.json"
    panels = ThresholdSet.load().with_model(ModelThresholds(
        "sim-clustered/1-d32", "t-panels", verify=0.3, mismatch=-1.0, yellow=0.74, red=0.76, pair_floor=0.72,
        calibration={"targets": {"fpir": 0.003}, "fnir_estimate": 0.5, "genuine_median": 0.5}), "t-panels")
    thresholds.write_text(panels.to_json())
    record(settings, panels, ["sim-clustered/1-d32"], datetime.now(UTC))  # what the accuracy panels compare with
    worker.env["LINTAS_DEDUP_THRESHOLDS"] = str(thresholds)
    produce(settings, records, tmp_path / "outbox.sqlite")
    producer = Producer({**kafka_config(settings, Role.ADMIN), "acks": "all"})
    for r in records[:15]:  # a few dead letters for the health dashboard
        value = frame(987_654, encode_payload(CROSSING_EVENT, r))
        producer.produce(CROSSING_EVENTS.name, key=b"poison", value=value,
                         headers=signed(settings, r["post"]["post_id"], value))
    assert producer.flush(30) == 0
    worker.start()
    expected = load_ids(settings, [r["event_id"] for r in records])
    wait_for(settings, expected, 10_000, 180, worker.log)
    client = clickhouse_client(settings)
    ids = f"SELECT toString(event_id) FROM {expected}"
    until(lambda: client.query(f"SELECT count() FROM dedup_decisions WHERE toString(event_id) IN ({ids})"
                                ).result_rows[0][0] > 0 and
           client.query("SELECT count() FROM dedup_links").result_rows[0][0] > 0 and
           client.query("SELECT count() FROM dead_letters WHERE ingested_at > now() - INTERVAL 1 HOUR"
                        ).result_rows[0][0] > 0, 180, worker.log)

    out = tmp_path / "preview"
    drawn = render(clickhouse_client(settings, readonly=True), out, datetime.now(UTC) - timedelta(hours=26))  # read-only user
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

