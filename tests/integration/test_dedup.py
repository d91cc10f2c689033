"""Biometric dedup on its own real stack: two workers sharing the sharded gallery, and a kill -9 after 50,000 enrolments.

Captures are synthetic: every person is a random unit "face" and each capture is
that face plus noise (template model ``test-iid/1``, thresholds in a file the workers
read), so which captures belong together is known exactly. Decisions and links are
counted in ClickHouse, as analysts and officers see them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from confluent_kafka import Producer

from agents.dedup import ModelThresholds, ThresholdSet
from infra.stack import Stack
from schemas.contracts import ADJUDICATION_DECISION
from schemas.wire import encode_payload, frame
from streams import clients
from streams.clients import clickhouse_client, kafka_config
from streams.settings import Settings
from streams.sim.simulator import Simulator
from streams.topics import BIOMETRIC_ADJUDICATIONS, Role
from tests.integration.conftest import migrated_stack
from tests.integration.pipeline_support import Worker, produce

pytestmark = pytest.mark.integration

PORT_BASE = 27000  # below the ephemeral range
DIM = 512


@pytest.fixture(scope="module")
def dstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from migrated_stack(tmp_path_factory, "dedup", PORT_BASE)


MODEL = "test-iid/1"


def _thresholds(settings: Settings) -> Path:
    """Thresholds for the test's model (random faces: impostors near 0, re-captures near 0.72)."""
    path = settings.state_dir / "test-thresholds.json"
    t = ModelThresholds(MODEL, "t-iid", verify=0.4, mismatch=0.1, yellow=0.45, red=0.55, pair_floor=0.4)
    path.write_text(ThresholdSet.load().with_model(t, "t-iid").to_json())
    return path


def _worker(settings: Settings, log: Path, n: int) -> Worker:
    return Worker(settings, log, {"LINTAS_DEDUP_DIMENSION": str(DIM), "LINTAS_WORKER_WEB_PORT": str(PORT_BASE + 66 + n),
                                  "LINTAS_DEDUP_BATCH_SIZE": "2000", "LINTAS_DEDUP_THRESHOLDS": str(_thresholds(settings))})


@pytest.fixture
def workers(dstack: Stack, tmp_path: Path) -> Iterator[list[Worker]]:
    ws = [_worker(dstack.settings, tmp_path / f"worker-{n}.log", n) for n in range(2)]
    yield ws
    for w in ws:
        w.stop()


class People:
    """Synthetic people: a face each, one document each; captures are the face plus noise.

    ``series`` starts every document number: tests share the stack's gallery, so each draws its own
    documents (a number another test used would be that identity's second face, first or not by event time).
    """

    def __init__(self, n: int, seed: int, series: str) -> None:
        self.series = series
        self.rng = np.random.default_rng(seed)
        faces = self.rng.standard_normal((n, DIM)).astype(np.float32)
        self.faces = faces / np.linalg.norm(faces, axis=1, keepdims=True)
        sim = Simulator(seed=seed, dim=8, days=0.5, end=datetime.now(UTC) - timedelta(hours=1), population=n)
        base = [r for kind, r in sim.events(int(n * 1.6) + 100, landings=0) if kind == "crossing"
                and r["biometric"] and r["traveller"]["document"]]
        assert len(base) >= n
        self.base = base[:n]

    def capture(self, person: int, document: str | None = None, minutes: int = 0) -> dict[str, Any]:
        r = self.base[person]
        face = 0.85 * self.faces[person] + 0.53 * self.rng.standard_normal(DIM).astype(np.float32) / np.sqrt(DIM)
        doc = {**r["traveller"]["document"], "number": document or f"{self.series}{person:08d}"}
        return {**r, "event_id": str(uuid.uuid4()), "occurred_at": r["occurred_at"] + timedelta(minutes=minutes),
                "traveller": {**r["traveller"], "document": doc},
                "biometric": {**r["biometric"], "template": face.astype("<f4").tobytes(), "dimension": DIM,
                              "quality": 0.9, "model": MODEL}}


def _q(settings: Settings, sql: str) -> Any:
    return clickhouse_client(settings).query(sql).result_rows


def _wait_decisions(settings: Settings, event_ids: list[str], timeout_s: float, logs: list[Path]) -> dict[str, tuple]:
    table = f"probes_{uuid.uuid4().hex[:8]}"
    clickhouse_client(settings, migrate=True).command(  # a scratch table: DDL, the migration user's
        f"CREATE TABLE {table} (event_id UUID) ENGINE = MergeTree ORDER BY event_id")
    clickhouse_client(settings).insert(table, [(i,) for i in event_ids], column_names=["event_id"])
    deadline, got = time.monotonic() + timeout_s, 0
    while time.monotonic() < deadline:
        got = _q(settings, f"SELECT uniqExact(event_id) FROM dedup_decisions WHERE event_id IN {table}")[0][0]
        if got == len(event_ids):
            break
        time.sleep(1)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-2500:]}" for p in logs if p.exists())
    assert got == len(event_ids), f"{got} of {len(event_ids)} decided after {timeout_s}s\n{tails}"
    rows = _q(settings, f"SELECT toString(event_id), outcome, subject_id, score FROM dedup_decisions FINAL "
                        f"WHERE event_id IN {table}")
    return {r[0]: r[1:] for r in rows}


def test_two_workers_share_the_sharded_gallery_and_officers_adjudicate_links(
        dstack: Stack, workers: list[Worker], tmp_path: Path) -> None:
    settings = dstack.settings
    people = People(1000, seed=71, series="X")
    first = [people.capture(i) for i in range(1000)]
    bad = people.capture(0)
    bad["biometric"] = {**bad["biometric"], "template": np.full(DIM, np.nan, "<f4").tobytes()}
    for w in workers:
        w.start()
    produce(settings, first + [bad], tmp_path / "first.sqlite")
    decided = _wait_decisions(settings, [r["event_id"] for r in first], 240, [w.log for w in workers])
    assert [d[0] for d in decided.values()].count("enrol") == 1000
    subject_of = {i: decided[r["event_id"]][1] for i, r in enumerate(first)}
    assert len(set(subject_of.values())) == 1000

    second = [people.capture(i, minutes=30) for i in range(1000)]
    forged = [people.capture(i, document=f"F{i:08d}", minutes=60) for i in range(0, 1000, 20)]
    produce(settings, second + forged, tmp_path / "second.sqlite")
    decided = _wait_decisions(settings, [r["event_id"] for r in second + forged], 240, [w.log for w in workers])
    for i, r in enumerate(second):
        assert decided[r["event_id"]][:2] == ("known_traveller", subject_of[i]), i
    forged_subject = {}
    for k, r in enumerate(forged):
        outcome, subject, _ = decided[r["event_id"]]
        assert outcome == "enrol" and subject not in subject_of.values(), "another document is another identity"
        forged_subject[subject] = subject_of[20 * k]
    # both workers served shards: each read some of the gallery back from Kafka
    loaded = [w.log.read_text().count("gallery shard") for w in workers]
    assert all(n > 0 for n in loaded), loaded

    # the template that could not be searched: the crossing is kept, the template is dead-lettered
    assert _q(settings, f"SELECT count() FROM crossings FINAL WHERE event_id = '{bad['event_id']}'")[0][0] == 1
    assert _q(settings, "SELECT error_code, error_field FROM dead_letters FINAL "
                        "WHERE error_code LIKE 'template_%'") == [("template_not_finite", "biometric.template")]

    # each forged document's subject is linked to the face's own subject: a proposal, OPEN, red
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and _q(settings, "SELECT count() FROM dedup_links FINAL")[0][0] < 50:
        time.sleep(1)
    links = _q(settings, "SELECT link_id, subject_id, linked_subject_id, status, colour FROM dedup_links FINAL "
                         "ORDER BY link_id")
    assert len(links) == 50 and {(s, c) for _, _, _, s, c in links} == {("OPEN", "RED")}
    assert {frozenset((a, b)) for _, a, b, _, _ in links} == {frozenset(p) for p in forged_subject.items()}
    links = [(link_id, a, s, c) for link_id, a, _, s, c in links]

    from schemas.wire import SchemaIds

    ids = SchemaIds(clients.registry(settings, Role.ADMIN))
    schema_id = ids.id_for(BIOMETRIC_ADJUDICATIONS.name, ADJUDICATION_DECISION)
    producer = Producer({**kafka_config(settings, Role.ADMIN), "enable.idempotence": True})
    now = datetime.now(UTC)
    targets = [(link_id, "CONFIRM" if n < 25 else "REJECT") for n, (link_id, *_) in enumerate(links)]
    targets.append(("L-does-not-exist", "CONFIRM"))
    for link_id, verdict in targets:
        record = {"decision_id": str(uuid.uuid4()), "link_id": link_id, "decision": verdict,
                  "officer_id": "OFFICER-TEST-7", "decided_at": now}
        producer.produce(BIOMETRIC_ADJUDICATIONS.name, key=link_id.encode(),
                         value=frame(schema_id, encode_payload(ADJUDICATION_DECISION, record)))
    assert producer.flush(30) == 0
    deadline = time.monotonic() + 120
    statuses: list[tuple[str, int]] = []
    while time.monotonic() < deadline:
        statuses = _q(settings, "SELECT status, count() FROM dedup_links FINAL GROUP BY status ORDER BY status")
        if statuses == [("CONFIRMED", 25), ("REJECTED", 25)]:
            break
        time.sleep(1)
    assert statuses == [("CONFIRMED", 25), ("REJECTED", 25)]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _q(settings, "SELECT count() FROM dead_letters WHERE "
                                                           "error_code = 'unknown_link'")[0][0]:
        time.sleep(1)
    assert _q(settings, "SELECT error_field FROM dead_letters FINAL WHERE error_code = 'unknown_link'") == [("link_id",)]
    # nothing but tokens, ids and scores in the dedup tables: no officer id, document number or template bytes
    for table in ("dedup_decisions", "dedup_links", "dead_letters"):
        dump = " ".join(str(row) for row in _q(settings, f"SELECT * FROM {table}"))
        assert "OFFICER-TEST-7" not in dump and "X00000001" not in dump and "F00000020" not in dump


def test_restart_after_20k_enrolments_loses_and_doubles_nobody(dstack: Stack, tmp_path: Path) -> None:
    settings = dstack.settings
    n = 20_000
    people = People(n, seed=72, series="Y")
    first = [people.capture(i) for i in range(n)]
    worker = _worker(settings, tmp_path / "worker.log", 0)
    try:
        worker.start()
        produce(settings, first, tmp_path / "first.sqlite")
        decided = _wait_decisions(settings, [r["event_id"] for r in first], 900, [worker.log])
        worker.kill9()  # right after the 20,000th decision is in ClickHouse
        subject_of = [decided[r["event_id"]][1] for r in first]
        assert [d[0] for d in decided.values()].count("enrol") == n and len(set(subject_of)) == n
        assert "gallery shard" in worker.log.read_text()

        sample = np.random.default_rng(5).choice(n, 2000, replace=False)
        again = [people.capture(int(i), minutes=45) for i in sample]
        worker.start()
        produce(settings, again, tmp_path / "again.sqlite")
        decided = _wait_decisions(settings, [r["event_id"] for r in again], 600, [worker.log])
        for i, r in zip(sample, again, strict=True):
            assert decided[r["event_id"]][:2] == ("known_traveller", subject_of[int(i)])
        enrolled, subjects = _q(settings, "SELECT count(), uniqExact(subject_id) FROM dedup_decisions FINAL "
                                          "WHERE outcome = 'enrol'")[0]
        assert enrolled == subjects >= n  # nobody enrolled twice, in this test or any other on this stack
    finally:
        worker.stop()
