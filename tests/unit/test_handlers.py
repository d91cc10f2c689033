"""The worker's batch handlers, called with fake topics, tables and sink: no broker, no ClickHouse."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agents.ingest import TemplatePolicy
from agents.keys import FileKeyring, Purposes
from agents.sealing import SqliteSubjectKeys, SubjectSealer
from agents.signing import signed_headers
from agents.vault import Recent
from schemas.contracts import CROSSING_EVENT
from schemas.wire import SchemaIds, encode_payload, frame
from streams.settings import Settings
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
from streams.worker.handlers import Services, handlers
from streams.worker.runtime import Record
from streams.worker.testing import MemoryOutlets, MemoryRegistry, MemorySink, NoLists
from streams.worker.testing import records as consumed


@pytest.fixture
def built(tmp_path: Path) -> tuple[Any, MemoryOutlets, MemorySink, SchemaIds]:
    settings = Settings(state_dir=tmp_path, dedup_dimension=32, dedup_quality_floor=0.0)
    keyring = FileKeyring(tmp_path / "keyring.json")
    subject_keys = SqliteSubjectKeys(tmp_path / "subject_keys.sqlite3")
    ids = SchemaIds(MemoryRegistry({"url": "mock://handlers"}))
    sink = MemorySink()
    svc = Services(settings=settings, ids=ids, keyring=keyring, keys=Purposes.from_provider(keyring), sink=sink,
                   executor=ThreadPoolExecutor(max_workers=1), subject_keys=subject_keys,
                   sealer=SubjectSealer(subject_keys), vaulted=Recent(), templates=TemplatePolicy(32, 0.0),
                   watchlists=NoLists(), post_keys=lambda post: POST_KEY if post != "NO-KEY" else None)
    out = MemoryOutlets()
    return handlers(svc, out.outlets), out, sink, ids


POST_KEY = bytes(range(32))  # every post's key in these tests (the worker reads each post's own)


def _event(value: bytes | None, offset: int, topic: str = "crossing_events", key: bytes | None = None,
           signer: str | None = None) -> Record:
    headers = tuple(signed_headers(signer, POST_KEY, value or b"")) if signer else ()
    return Record(topic, 0, offset, datetime.now(UTC).timestamp(), key, value, headers)


async def test_ingest_batch_rows_dead_letters_sends_and_its_record_of_processing(built: Any) -> None:
    worker, out, sink, ids = built
    sim = Simulator(seed=3, dim=32, days=1, end=datetime.now(UTC) - timedelta(hours=1), population=50)
    records = [r for kind, r in sim.events(5, landings=0) if kind == "crossing"]
    schema_id = ids.id_for("crossing_events", CROSSING_EVENT)
    values = [frame(schema_id, encode_payload(CROSSING_EVENT, r)) for r in records]
    batch = [_event(v, i, signer=r["post"]["post_id"]) for i, (v, r) in enumerate(zip(values, records, strict=True))]
    n = len(batch)
    batch.append(_event(b"\x07not avro", n, signer="ID-BTH"))  # bad magic byte
    batch.append(_event(values[0], n + 1))  # unsigned
    batch.append(_event(values[0], n + 2, signer="NO-KEY"))  # a post without a key here
    batch.append(_event(values[0][:-1] + b"\x00", n + 3, signer=records[0]["post"]["post_id"]))  # altered after
    batch[-1] = replace(batch[-1], headers=tuple(signed_headers(records[0]["post"]["post_id"], POST_KEY, values[0])))
    other = next(p for p in ("ID-BTH", "MY-JBC") if p != records[0]["post"]["post_id"])
    batch.append(_event(values[0], n + 4, signer=other))  # signed by one post, naming another

    await worker.crossings.process(batch)

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


async def test_the_rule_handler_keeps_state_in_its_table_and_sends_alerts(built: Any) -> None:
    worker, out, sink, ids = built
    sim = Simulator(seed=4, dim=32, days=1, end=datetime.now(UTC) - timedelta(hours=1), population=50)
    records = [r for kind, r in sim.events(40, landings=0) if kind == "crossing"]
    schema_id = ids.id_for("crossing_events", CROSSING_EVENT)
    await worker.crossings.process([_event(frame(schema_id, encode_payload(CROSSING_EVENT, r)), n, signer=r["post"]["post_id"])
                                    for n, r in enumerate(records)])
    facts = consumed(TRAFFICKING_FACTS.name, out.sent(TRAFFICKING_FACTS.name))

    await worker.rules.process(facts)
    written = out.outlets.trafficking_state.write()  # what the agent does after its handler: once per key

    keys = {f.key for f in facts}
    assert written == len(keys), "every key's state, written once for the batch"
    assert len(out.sent(changelog_of(TRAFFICKING_STATE_TABLE).name)) == written
    assert all(k in out.outlets.trafficking_state for k in keys)
    assert any(r["component"] == "trafficking_rules" for r in sink.rows["processing_log"])
    assert len(out.sent(ALERTS.name)) == len(sink.rows.get("alerts", []))


async def test_review_decisions_are_checked_then_applied_by_the_case_agent(built: Any) -> None:
    """An escort fan-out's alerts open a case; a decision from review.decisions reaches it, a bad one is refused."""
    import uuid

    from agents.trafficking.config import load_rules
    from agents.trafficking.engine import latest, run
    from agents.trafficking.facts import Fact
    from schemas.contracts import REVIEW_DECISION

    worker, out, sink, ids = built
    t0 = datetime.now(UTC) - timedelta(hours=10)
    facts = [Fact(key="doc:esc", role="ESCORT", event_id=f"e{i}", occurred_at=t0 + timedelta(hours=i),
                  post_id="ID-ETK", post_country="IDN", direction="EXIT", traveller=f"t{i}", relationship="UNRELATED",
                  is_minor=i == 0) for i in range(4)]
    await worker.rules.send.alerts(list(latest(run(facts, load_rules())[1]).values()), "trafficking")
    await worker.cases.process(consumed(CASE_COMMANDS.name, out.sent(CASE_COMMANDS.name)))
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
    await worker.decisions.process(decision("REFER", case["case_id"], pathway="CHILD_PROTECTION"))
    await worker.decisions.process(decision("CONFIRM_LINK", case["case_id"]))  # a link action on a case
    [forwarded] = out.sent(CASE_COMMANDS.name)[sent:]
    assert b"OFFICER-UNIT-1" not in (forwarded.value or b""), "the officer's account is tokenised"
    assert sink.rows["dead_letters"][-1]["error_code"] == "wrong_target"
    [command] = consumed(CASE_COMMANDS.name, [forwarded], first_offset=99)
    await worker.cases.process([command, command])  # delivered twice
    assert sink.rows["cases"][-1]["status"] == "REFERRED" and sink.rows["cases"][-1]["pathways"] == \
        ["CHILD_PROTECTION"]
    assert len({d["decision_id"] for d in sink.rows["case_decisions"]}) == 1
