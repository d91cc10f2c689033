"""The worker's handlers, through the worker's own effect order, over in-memory topics, tables and sink."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agents.signing import signed_headers
from schemas.contracts import CROSSING_EVENT
from schemas.wire import encode_payload, frame
from streams.sim.simulator import Simulator
from streams.topics import (
    ALERTS,
    BIOMETRIC_PROBES,
    CASE_COMMANDS,
    CROSSING_EVENTS_DLQ,
    IDENTITY_VAULT,
    REVIEW_DECISIONS,
    TRAFFICKING_FACTS,
    TRAFFICKING_STATE_TABLE,
    changelog_of,
)
from streams.worker.runtime import Record
from streams.worker.testing import MemoryWorker, Sent, memory_services
from streams.worker.testing import records as consumed


@pytest.fixture
def worker(tmp_path: Path) -> MemoryWorker:
    return MemoryWorker(memory_services(tmp_path, lambda post: POST_KEY if post != "NO-KEY" else None, dimension=32,
                                        quality_floor=0.0))


POST_KEY = bytes(range(32))  # every post's key in these tests (the worker reads each post's own)


def _event(value: bytes | None, offset: int, topic: str = "crossing_events", key: bytes | None = None,
           signer: str | None = None) -> Record:
    headers = tuple(signed_headers(signer, POST_KEY, value or b"")) if signer else ()
    return Record(topic, 0, offset, datetime.now(UTC).timestamp(), key, value, headers)


async def test_ingest_batch_rows_dead_letters_sends_and_its_record_of_processing(worker: MemoryWorker) -> None:
    out, sink, ids = worker, worker.sink, worker.services.ids
    sim = Simulator(seed=3, dim=32, days=1, end=datetime.now(UTC) - timedelta(hours=1), population=50)
    records = [r for kind, r in sim.events(5, landings=0) if kind == "crossing"]
    schema_id = ids.id_for("crossing_events", CROSSING_EVENT)
    values = [frame(schema_id, encode_payload(CROSSING_EVENT, r)) for r in records]
    batch = [_event(v, i, signer=r["post"]["post_id"]) for i, (v, r) in enumerate(zip(values, records, strict=True))]
    n = len(batch)
    batch.append(_event(b"\x07not avro", n, signer="ID-BTH"))  # bad magic byte
    batch.append(_event(values[0], n + 1))  # unsigned
    batch.append(_event(values[0], n + 2, signer="NO-KEY"))  # a post without a key here
    batch.append(_event(values[0][:-1] + bytes([values[0][-1] ^ 1]), n + 3, signer=records[0]["post"]["post_id"]))  # altered after
    batch[-1] = replace(batch[-1], headers=tuple(signed_headers(records[0]["post"]["post_id"], POST_KEY, values[0])))
    other = next(p for p in ("ID-BTH", "MY-JBC") if p != records[0]["post"]["post_id"])
    batch.append(_event(values[0], n + 4, signer=other))  # signed by one post, naming another

    await worker.handle("ingest_crossings", batch)

    assert len(sink.rows["crossings"]) == len(records)
    assert [r["source_offset"] for r in sink.rows["crossings"]] == list(range(len(records)))
    letters = {letter["source_offset"]: (letter["error_code"], letter["error_field"])
               for letter in sink.rows["dead_letters"]}
    assert letters == {n: ("bad_magic", ""), n + 1: ("unsigned", "signature"), n + 2: ("unknown_signer", "signature"),
                       n + 3: ("bad_signature", "signature"), n + 4: ("not_the_signer", "post.post_id")}
    assert out.sent(CROSSING_EVENTS_DLQ.name)[0].headers["lintas.error.code"] == b"bad_magic"
    assert len(out.sent(TRAFFICKING_FACTS.name)) >= len(records) and out.sent(IDENTITY_VAULT.name)
    assert len(out.sent(BIOMETRIC_PROBES.name)) == sum(1 for r in records if r["biometric"])
    logged = {(r["component"], r["destination"]): r["records"] for r in sink.rows["processing_log"]}
    assert logged[("ingest_crossings", "clickhouse:crossings")] == len(records)
    assert logged[("ingest_crossings", CROSSING_EVENTS_DLQ.name)] == 5
    raw = {records[0]["traveller"]["document"]["number"], records[0]["traveller"]["surname"]} - {""}
    assert not any(v in str(sink.rows) for v in raw), "no document number or name in any row"


async def test_the_rule_handler_keeps_state_in_its_table_and_sends_alerts(worker: MemoryWorker) -> None:
    out, sink, ids = worker, worker.sink, worker.services.ids
    sim = Simulator(seed=4, dim=32, days=1, end=datetime.now(UTC) - timedelta(hours=1), population=50)
    records = [r for kind, r in sim.events(40, landings=0) if kind == "crossing"]
    schema_id = ids.id_for("crossing_events", CROSSING_EVENT)
    await worker.handle("ingest_crossings", [_event(frame(schema_id, encode_payload(CROSSING_EVENT, r)), n,
                                                    signer=r["post"]["post_id"]) for n, r in enumerate(records)])
    facts = consumed(TRAFFICKING_FACTS.name, out.sent(TRAFFICKING_FACTS.name))

    await worker.handle("trafficking_rules", facts)

    keys = {f.key for f in facts}
    table = worker.pipeline.tables[TRAFFICKING_STATE_TABLE]
    assert len(out.sent(changelog_of(TRAFFICKING_STATE_TABLE).name)) == len(keys), "each key's state, once a batch"
    assert all(k in table for k in keys)
    assert any(r["component"] == "trafficking_rules" for r in sink.rows["processing_log"])
    assert len(out.sent(ALERTS.name)) == len(sink.rows.get("alerts", []))


async def test_review_decisions_are_checked_then_applied_by_the_case_agent(worker: MemoryWorker) -> None:
    """An escort fan-out's alerts open a case; a decision from review.decisions reaches it, a bad one is refused."""
    import uuid

    from agents.trafficking.facts import Fact
    from schemas.contracts import REVIEW_DECISION

    out, sink, ids = worker, worker.sink, worker.services.ids
    t0 = datetime.now(UTC) - timedelta(hours=10)
    facts = [Fact(key="doc:esc", role="ESCORT", event_id=f"e{i}", occurred_at=t0 + timedelta(hours=i),
                  post_id="ID-ETK", post_country="IDN", direction="EXIT", traveller=f"t{i}", relationship="UNRELATED",
                  is_minor=i == 0) for i in range(4)]
    await worker.handle("trafficking_rules", consumed(TRAFFICKING_FACTS.name, [
        Sent(TRAFFICKING_FACTS.name, f.to_bytes(), f.key.encode()) for f in facts]))
    await worker.handle("cases", consumed(CASE_COMMANDS.name, out.sent(CASE_COMMANDS.name)))
    [case] = [r for r in sink.rows["cases"] if r["key_kind"] == "doc"][-1:]
    assert (case["status"], case["severity"], case["rules"]) == ("OPEN", "HIGH", ["escort_fanout"])

    schema_id = ids.id_for("review.decisions", REVIEW_DECISION)

    def decision(action: str, target: str, **kw: Any) -> Any:
        record = {"decision_id": str(uuid.uuid4()), "target_kind": "CASE", "target_id": target, "action": action,
                  "reason_code": None, "pathway": None, "officer_id": "OFFICER-UNIT-1", "officer_role": "reviewer",
                  "post_id": "ID-ETK", "case_version": 0, "decided_at": datetime.now(UTC), **kw}
        return _event(frame(schema_id, encode_payload(REVIEW_DECISION, record)), 0, REVIEW_DECISIONS.name,
                      target.encode())

    sent = len(out.sent(CASE_COMMANDS.name))
    await worker.handle("review_decisions", [decision("REFER", case["case_id"], pathway="CHILD_PROTECTION")])
    await worker.handle("review_decisions", [decision("CONFIRM_LINK", case["case_id"])])  # a link action on a case
    [forwarded] = out.sent(CASE_COMMANDS.name)[sent:]
    assert b"OFFICER-UNIT-1" not in (forwarded.value or b""), "the officer's account is tokenised"
    assert sink.rows["dead_letters"][-1]["error_code"] == "wrong_target"
    [command] = consumed(CASE_COMMANDS.name, [forwarded], first_offset=99)
    await worker.handle("cases", [command, command])  # delivered twice
    assert sink.rows["cases"][-1]["status"] == "REFERRED" and sink.rows["cases"][-1]["pathways"] == \
        ["CHILD_PROTECTION"]
    assert len({d["decision_id"] for d in sink.rows["case_decisions"]}) == 1


async def test_ingest_refuses_an_event_of_an_unregistered_post_even_when_signed(worker: MemoryWorker) -> None:
    """A post that has a key but is not in the registry (or claims another country) never becomes a row."""
    sim = Simulator(seed=6, dim=32, days=1, end=datetime.now(UTC) - timedelta(hours=1), population=50)
    record = next(r for kind, r in sim.events(3, landings=0) if kind == "crossing")
    schema_id = worker.services.ids.id_for("crossing_events", CROSSING_EVENT)
    unknown = {**record, "post": {**record["post"], "post_id": "ZZ-NOPE"}}
    moved = {**record, "post": {**record["post"], "country": "THA"}}
    batch = [_event(frame(schema_id, encode_payload(CROSSING_EVENT, r)), n, signer=r["post"]["post_id"])
             for n, r in enumerate([unknown, moved])]
    await worker.handle("ingest_crossings", batch)
    assert "crossings" not in worker.sink.rows
    assert [(d["error_code"], d["error_field"]) for d in worker.sink.rows["dead_letters"]] == [
        ("unknown_post", "post.post_id"), ("post_mismatch", "post.country")]


async def test_refusals_count_the_lines_a_post_refused_once_and_nothing_the_pipeline_dead_lettered(
        worker: MemoryWorker) -> None:
    from agents.dead_letters import REFUSED_PARTITION, DeadLetter, Source, dead_letter_payload
    from schemas.contracts import DEAD_LETTER

    now = datetime.now(UTC)
    schema_id = worker.services.ids.id_for(CROSSING_EVENTS_DLQ.name, DEAD_LETTER)
    refused = DeadLetter(Source("crossing_events", REFUSED_PARTITION, 3, 0), "unknown_post", "post.post_id",
                         "no such post", b'{"post": "ZZ-NOPE"}')
    ingested = DeadLetter(Source("crossing_events", 2, 41, 0), "unsigned", "signature", "no header", b"x")
    batch = [Record(CROSSING_EVENTS_DLQ.name, 0, offset, now.timestamp(), None,
                    frame(schema_id, dead_letter_payload(letter, now)))
             for offset, letter in enumerate([refused, ingested, refused])]
    await worker.handle("refusals_crossings", batch[:2])
    await worker.handle("refusals_crossings", batch[:1])  # a replay
    rows = worker.sink.rows["dead_letters"]
    assert {(r["source_topic"], r["source_partition"], r["source_offset"], r["error_code"]) for r in rows} == {
        (CROSSING_EVENTS_DLQ.name, 0, 0, "unknown_post")}, "keyed where the envelope sits: a replay is the same row"
    assert rows[0]["reason"] == "refused at the post, line 3: no such post"
