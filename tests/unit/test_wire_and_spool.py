"""Confluent framing, decoding with schema resolution, and the durable spool."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from schemas.contracts import CROSSING_EVENT
from schemas.wire import DecodeError, decode, encode_payload, frame, unframe
from streams.post.spool import Spool
from streams.sim.simulator import Simulator


class FakeIds:
    """The registry's answer for one id, without a registry."""

    def __init__(self, schemas: dict[int, Any]) -> None:
        self.schemas = schemas

    def writer_schema(self, schema_id: int) -> Any:
        import fastavro

        if schema_id not in self.schemas:
            raise DecodeError("unknown_schema", f"schema id {schema_id} is not in the registry")
        return fastavro.parse_schema(self.schemas[schema_id])


@pytest.fixture(scope="module")
def record() -> dict[str, Any]:
    events = Simulator(seed=5, dim=4, population=20).events(40, landings=0)
    return next(r for k, r in events if k == "crossing" and r["biometric"] is not None)


def test_frame_round_trip(record) -> None:
    payload = encode_payload(CROSSING_EVENT, record)
    data = frame(42, payload)
    assert data[0] == 0 and int.from_bytes(data[1:5], "big") == 42
    assert unframe(data) == (42, payload)
    decoded = decode(data, CROSSING_EVENT, FakeIds({42: CROSSING_EVENT.schema}))
    assert decoded["biometric"]["quality"] == pytest.approx(record["biometric"]["quality"], abs=1e-6)
    decoded["biometric"]["quality"] = record["biometric"]["quality"]  # float32 on the wire
    assert decoded == record


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda d: d[:3], "truncated"),
        (lambda d: b"", "truncated"),
        (lambda d: b"\x01" + d[1:], "bad_magic"),
        (lambda d: d[:5] + b"\x00\x00\x09" + d[8:], "unknown_schema"),
        (lambda d: d[:40], "truncated"),
        (lambda d: d + b"\x00\x01", "trailing_bytes"),
    ],
)
def test_poison_bytes_are_named(record, mutate, code) -> None:
    data = frame(42, encode_payload(CROSSING_EVENT, record))
    if code == "unknown_schema":
        data = frame(9, data[5:])
    with pytest.raises(DecodeError) as err:
        decode(mutate(data) if code != "unknown_schema" else data, CROSSING_EVENT, FakeIds({42: CROSSING_EVENT.schema}))
    assert err.value.code == code


def test_a_message_cut_anywhere_is_truncated_not_malformed() -> None:
    """A cut inside a multi-byte UTF-8 name used to read as malformed (and made a poison test flaky)."""
    records = [r for k, r in Simulator(seed=34, dim=4, population=200).events(200, landings=0) if k == "crossing"]
    record = {**records[0], "traveller": {**records[0]["traveller"], "given_names": "Nguyễn Thị Ánh"}}
    ids = FakeIds({42: CROSSING_EVENT.schema})
    codes = set()
    for r in [record, *records[1:60]]:
        data = frame(42, encode_payload(CROSSING_EVENT, r))
        for cut in range(5, len(data)):
            with pytest.raises(DecodeError) as err:
                decode(data[:cut], CROSSING_EVENT, ids)
            codes.add(err.value.code)
    assert codes == {"truncated"}


def test_older_writer_resolves_into_current_contract(record) -> None:
    """A post still on an older schema (here: without `officer_id`... with it dropped) is read with defaults."""
    older = json.loads(CROSSING_EVENT.schema_str)
    older["fields"] = [f for f in older["fields"] if f["name"] != "visa_type"]
    import fastavro

    payload = encode_payload(type(CROSSING_EVENT)(name="old", schema=older, parsed=fastavro.parse_schema(older)),
                             {k: v for k, v in record.items() if k != "visa_type"})
    decoded = decode(frame(7, payload), CROSSING_EVENT, FakeIds({7: older}))
    assert decoded["visa_type"] is None and decoded["event_id"] == record["event_id"]


def test_spool_accepts_in_order_and_forgets_delivered(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "outbox.sqlite")
    assert spool.accept([("t", f"k{i}".encode(), "CrossingEvent", bytes([i])) for i in range(10)]) == 10
    first = spool.after(0, 4)
    assert [e.payload for e in first] == [bytes([i]) for i in range(4)]
    spool.delivered([e.seq for e in first])
    assert spool.pending() == 6
    spool.close()
    reopened = Spool(tmp_path / "outbox.sqlite")  # survives the process
    assert [e.payload for e in reopened.after(0, 100)] == [bytes([i]) for i in range(4, 10)]


@pytest.mark.parametrize(
    ("template", "quality", "code"),
    [
        (np.full(4, np.nan, "<f4").tobytes(), 0.9, "template_not_finite"),
        (np.zeros(4, "<f4").tobytes(), 0.9, "template_zero_norm"),
        (np.ones(4, "<f4").tobytes(), 0.1, "template_low_quality"),
        (None, 0.9, None),
    ],
)
def test_ingest_keeps_the_crossing_and_dead_letters_only_a_bad_template(record, template, quality, code) -> None:
    from datetime import UTC, datetime

    from agents.dead_letters import Source
    from agents.ingest import CROSSINGS, Accepted, TemplatePolicy, ingest
    from agents.keys import Purposes
    from agents.pseudonymise import Tokeniser

    bad = {**record, "biometric": {**record["biometric"], "quality": quality,
                                   "template": template or record["biometric"]["template"]}}
    data = frame(42, encode_payload(CROSSING_EVENT, bad))
    now = record["occurred_at"] if record["occurred_at"] > datetime(2000, 1, 1, tzinfo=UTC) else datetime.now(UTC)
    out = ingest(data, Source("crossing_events", 1, 7, 0), CROSSINGS, FakeIds({42: CROSSING_EVENT.schema}),
                 Purposes.single(Tokeniser(b"k", "k")), now, TemplatePolicy(dimension=4, quality_floor=0.3))
    assert isinstance(out, Accepted) and out.row["event_id"] == record["event_id"]
    from agents.pseudonymise import document_token

    document = record["traveller"]["document"]
    assert out.presented is not None and out.presented.document_token == document_token(
        Tokeniser(b"k", "k"), document["issuing_state"], document["number"]), "the checks get the document's token"
    if code is None:
        assert out.letters == [] and [c.probe_id for c, _ in out.probes] == [str(record["event_id"])]
        assert abs(float(np.linalg.norm(out.probes[0][1])) - 1) < 1e-6
    else:
        assert out.probes == [] and [(x.error_code, x.error_field) for x in out.letters] == [
            (code, "biometric.template")]
        assert out.letters[0].source.offset == 7 and str(record["event_id"]) not in out.letters[0].reason
