"""The worker's batch handlers, called with fake topics, tables and sink: no broker, no ClickHouse."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka.schema_registry._sync.mock_schema_registry_client import MockSchemaRegistryClient

from agents.ingest import TemplatePolicy
from agents.keys import FileKeyring, Purposes
from agents.sealing import SqliteSubjectKeys, SubjectSealer
from agents.vault import Recent
from schemas.contracts import CROSSING_EVENT
from schemas.wire import SchemaIds, encode_payload, frame
from streams.handlers import Outlets, Services, handlers
from streams.settings import Settings
from streams.simulator import Simulator


class FakeTopic:
    """Records what a handler sends; every send is acknowledged at once."""

    def __init__(self, name: str) -> None:
        self.name, self.sent = name, []

    def get_topic_name(self) -> str:
        return self.name

    async def send(self, *, key: bytes | None = None, value: bytes | None = None, partition: int | None = None,
                   headers: list[tuple[str, bytes]] | None = None) -> Any:
        self.sent.append({"key": key, "value": value, "partition": partition, "headers": dict(headers or [])})
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class Registry(MockSchemaRegistryClient):
    """confluent-kafka's in-memory registry, with the compatibility level it does not keep."""

    def get_compatibility(self, subject_name: str | None = None) -> str:
        return "FULL_TRANSITIVE"


class FakeSink:
    def __init__(self) -> None:
        self.rows: dict[str, list[dict[str, Any]]] = {}

    def write(self, table: str, rows: list[dict[str, Any]]) -> None:
        self.rows.setdefault(table, []).extend(rows)

    def client(self) -> Any:
        raise AssertionError("no ClickHouse read expected")


class NoLists:
    ready = SimpleNamespace(is_set=lambda: True)

    def start(self) -> None:
        pass

    def lookup(self, token: str) -> list[Any]:
        return []

    def sizes(self) -> dict[str, int]:
        return {"lost_stolen": 0}


@pytest.fixture
def built(tmp_path: Path) -> tuple[Any, Outlets, FakeSink, SchemaIds]:
    settings = Settings(state_dir=tmp_path, dedup_dimension=32, dedup_quality_floor=0.0)
    keyring = FileKeyring(tmp_path / "keyring.json")
    subject_keys = SqliteSubjectKeys(tmp_path / "subject_keys.sqlite3")
    ids = SchemaIds(Registry({"url": "mock://handlers"}))
    sink = FakeSink()
    svc = Services(settings=settings, ids=ids, keyring=keyring, keys=Purposes.from_provider(keyring), sink=sink,
                   executor=ThreadPoolExecutor(max_workers=1), subject_keys=subject_keys,
                   sealer=SubjectSealer(subject_keys), vaulted=Recent(), templates=TemplatePolicy(32, 0.0),
                   watchlists=NoLists())
    names = ("crossing_dlq", "landing_dlq", "adjudication_dlq", "probes", "gallery", "pairs", "links", "facts",
             "audit", "vault", "alerts", "cases", "review_dlq")
    out = Outlets(**{n: FakeTopic(n) for n in names}, trafficking_state={}, stay_state={}, link_state={},
                  case_state={})
    return handlers(svc, out), out, sink, ids


def _event(value: bytes | None, offset: int) -> Any:
    message = SimpleNamespace(topic="crossing_events", partition=0, offset=offset, key=None, value=value,
                              timestamp=datetime.now(UTC).timestamp())
    return SimpleNamespace(message=message)


async def test_ingest_batch_rows_dead_letters_sends_and_its_record_of_processing(built: Any) -> None:
    worker, out, sink, ids = built
    sim = Simulator(seed=3, dim=32, days=1, end=datetime.now(UTC) - timedelta(hours=1), population=50)
    records = [r for kind, r in sim.events(5, landings=0) if kind == "crossing"]
    schema_id = ids.id_for("crossing_events", CROSSING_EVENT)
    batch = [_event(frame(schema_id, encode_payload(CROSSING_EVENT, r)), n) for n, r in enumerate(records)]
    batch.append(_event(b"\x07not avro", len(batch)))  # bad magic byte

    await worker.crossings.process(batch)

    assert len(sink.rows["crossings"]) == len(records)
    assert [r["source_offset"] for r in sink.rows["crossings"]] == list(range(len(records)))
    [letter] = sink.rows["dead_letters"]
    assert (letter["error_code"], letter["source_offset"]) == ("bad_magic", len(records))
    assert out.crossing_dlq.sent[0]["headers"]["lintas.error.code"] == b"bad_magic"
    assert len(out.facts.sent) >= len(records) and out.vault.sent
    assert len(out.probes.sent) == sum(1 for r in records if r["biometric"])
    logged = {(r["component"], r["destination"]): r["records"] for r in sink.rows["processing_log"]}
    assert logged[("ingest_crossings", "clickhouse:crossings")] == len(records)
    assert logged[("ingest_crossings", "crossing_dlq")] == 1  # the fake DLQ topic's name
    raw = {records[0]["traveller"]["document"]["number"], records[0]["traveller"]["surname"]} - {""}
    assert not any(v in str(sink.rows) for v in raw), "no document number or name in any row"


async def test_the_rule_handler_keeps_state_in_its_table_and_sends_alerts(built: Any) -> None:
    worker, out, sink, ids = built
    sim = Simulator(seed=4, dim=32, days=1, end=datetime.now(UTC) - timedelta(hours=1), population=50)
    records = [r for kind, r in sim.events(40, landings=0) if kind == "crossing"]
    schema_id = ids.id_for("crossing_events", CROSSING_EVENT)
    await worker.crossings.process([_event(frame(schema_id, encode_payload(CROSSING_EVENT, r)), n)
                                    for n, r in enumerate(records)])
    facts = [_event(f["value"], n) for n, f in enumerate(out.facts.sent)]
    for e, f in zip(facts, out.facts.sent, strict=True):
        e.message.key, e.message.topic = f["key"], "trafficking.facts"

    await worker.rules.process(facts)

    assert out.trafficking_state, "every key's state is in the table"
    assert any(r["component"] == "trafficking_rules" for r in sink.rows["processing_log"])
    assert len(out.alerts.sent) == len(sink.rows.get("alerts", []))


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
    commands = [_event(s["value"], n) for n, s in enumerate(out.cases.sent)]
    for e, s in zip(commands, out.cases.sent, strict=True):
        e.message.key, e.message.topic = s["key"], "review.cases"
    await worker.cases.process(commands)
    [case] = [r for r in sink.rows["cases"] if r["key_kind"] == "doc"][-1:]
    assert (case["status"], case["severity"], case["rules"]) == ("OPEN", "HIGH", ["escort_fanout"])

    schema_id = ids.id_for("review.decisions", REVIEW_DECISION)

    def decision(action: str, target: str, **kw: Any) -> Any:
        record = {"decision_id": str(uuid.uuid4()), "target_kind": "CASE", "target_id": target, "action": action,
                  "reason_code": None, "pathway": None, "officer_id": "OFFICER-UNIT-1", "officer_role": "reviewer",
                  "post_id": "ID-ETK", "case_version": 0, "decided_at": datetime.now(UTC), **kw}
        event = _event(frame(schema_id, encode_payload(REVIEW_DECISION, record)), 0)
        event.message.topic, event.message.key = "review.decisions", target.encode()
        return event

    sent = len(out.cases.sent)
    await worker.decisions.process(decision("REFER", case["case_id"], pathway="CHILD_PROTECTION"))
    await worker.decisions.process(decision("CONFIRM_LINK", case["case_id"]))  # a link action on a case
    [forwarded] = out.cases.sent[sent:]
    assert b"OFFICER-UNIT-1" not in forwarded["value"], "the officer's account is tokenised"
    assert sink.rows["dead_letters"][-1]["error_code"] == "wrong_target"
    command = _event(forwarded["value"], 99)
    command.message.key, command.message.topic = forwarded["key"], "review.cases"
    await worker.cases.process([command, command])  # delivered twice
    assert sink.rows["cases"][-1]["status"] == "REFERRED" and sink.rows["cases"][-1]["pathways"] == \
        ["CHILD_PROTECTION"]
    assert len({d["decision_id"] for d in sink.rows["case_decisions"]}) == 1
