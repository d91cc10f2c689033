"""Border-post producer against the real stack: bad lines, interop, broker outage, producer crash."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from infra.kafka import write_kcat_config
from infra.stack import Stack
from schemas.contracts import CROSSING_EVENT
from schemas.wire import SchemaIds, decode
from streams import clients
from streams.clients import kafka_config
from streams.post.producer import Forwarder, accept_records
from streams.post.spool import Spool
from streams.settings import Settings
from streams.sim.files import to_json_line
from streams.sim.simulator import Simulator
from streams.topics import CROSSING_EVENTS, Role
from tests.conftest import REPO, settings_env

pytestmark = pytest.mark.integration


def _simulate(seed: int, n: int) -> list[dict[str, Any]]:
    sim = Simulator(seed=seed, dim=64, days=1, end=datetime.now(UTC) - timedelta(hours=1), population=400)
    return [r for kind, r in sim.events(n, landings=0) if kind == "crossing"]


def _consume_messages(settings: Settings, topic: str) -> list[tuple[int, int, bytes, bytes, bytes]]:
    """Every message now in ``topic``, from each partition's low watermark: (partition, offset, key, value, headers).

    ``headers`` is every header's name and value concatenated (for scans).
    """
    consumer = Consumer({**kafka_config(settings, Role.ADMIN), "group.id": f"probe-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in partitions}
    todo = {p for p, (lo, hi) in ends.items() if hi > lo}
    consumer.assign([TopicPartition(topic, p, ends[p][0]) for p in todo])
    out: list[tuple[int, int, bytes, bytes, bytes]] = []
    deadline = time.monotonic() + 120
    while todo and time.monotonic() < deadline:
        msg = consumer.poll(1)
        if msg is not None and msg.error() and msg.error().code() == KafkaError._PARTITION_EOF:
            todo.discard(msg.partition())  # a transaction's commit marker may hold the last offset
        if msg is None or msg.error():
            continue
        headers = b"".join(k.encode() + (v or b"") for k, v in msg.headers() or [])
        out.append((msg.partition(), msg.offset(), msg.key() or b"", msg.value() or b"", headers))
        if msg.offset() + 1 >= ends[msg.partition()][1]:
            todo.discard(msg.partition())
    consumer.close()
    assert not todo, f"{topic}: partitions {todo} not read to the end"
    return out


def _consume_all(settings: Settings, topic: str = CROSSING_EVENTS.name) -> list[tuple[int, int, bytes]]:
    """Every message now in the topic: (partition, offset, value)."""
    return [(partition, offset, value) for partition, offset, _, value, _ in _consume_messages(settings, topic)]


def _event_ids(settings: Settings, wanted: set[str]) -> list[tuple[str, str, int, int]]:
    """(event_id, post_id, partition, offset) of the wanted events found in crossing_events, in offset order."""
    ids = SchemaIds(clients.registry(settings, Role.ADMIN))
    found = []
    for partition, offset, value in _consume_all(settings):
        record = decode(value, CROSSING_EVENT, ids)
        if record["event_id"] in wanted:
            found.append((record["event_id"], record["post"]["post_id"], partition, offset))
    return sorted(found, key=lambda r: (r[2], r[3]))


def _lintas(settings: Settings, *args: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([str(Path(sys.executable).parent / "lintas"), *args], cwd=REPO, text=True,
                            env={**os.environ, **settings_env(settings)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kw)


def _malform(line: str, how: int) -> tuple[str, str]:
    """A bad variant of a good line and the field its error must name."""
    obj = json.loads(line)
    if how == 0:
        return line[: len(line) // 2], "(record)"
    if how == 1:
        del obj["traveller"]["document"]["number"]
        return json.dumps(obj), "traveller.document.number"
    if how == 2:
        obj["direction"] = "INBOUND"
        return json.dumps(obj), "direction"
    if how == 3:
        obj["occurred_at"] = obj["occurred_at"].replace("Z", "")
        return json.dumps(obj), "occurred_at"
    obj["post"]["country"] = "Indonesia"
    return json.dumps(obj), "post.country"


def test_produce_reports_every_bad_line_and_delivers_the_rest(stack: Stack, settings: Settings,
                                                               tmp_path: Path) -> None:
    records = _simulate(seed=21, n=2000)
    lines = [to_json_line(r) for r in records]
    bad: dict[int, str] = {}
    for i in range(0, 2000, 100):  # 1 % malformed, spread through the file
        lines[i + 37], bad[i + 38] = _malform(lines[i + 37], len(bad) % 5)
    path = tmp_path / "crossings.jsonl"
    path.write_text("\n".join(lines) + "\n")

    proc = _lintas(settings, "produce", str(path), "--type", "crossing", "--spool", str(tmp_path / "outbox.sqlite"))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    reported = {}
    for line in err.splitlines():
        number, field, *_ = line.split(": ")
        reported.setdefault(int(number.removeprefix("line ")), field)
    assert reported == bad
    assert "2000 lines: 1980 accepted, 20 bad; 1980 delivered to Kafka, 0 waiting in the spool" in out

    good = {r["event_id"] for i, r in enumerate(records) if i + 1 not in bad}
    never = {r["event_id"] for i, r in enumerate(records) if i + 1 in bad}
    found = _event_ids(settings, good | never)
    assert {f[0] for f in found} == good

    # Interop: what lintas produce wrote reads with confluent-kafka's own AvroDeserializer.
    registry = clients.registry(settings, Role.ADMIN)
    deserializer = AvroDeserializer(registry)
    ctx = SerializationContext(CROSSING_EVENTS.name, MessageField.VALUE)
    by_id = {r["event_id"]: r for r in records}
    checked = 0
    for _, _, value in _consume_all(settings):
        official = deserializer(value, ctx)
        if str(official["event_id"]) in good:  # the official reader maps the uuid logical type to UUID
            ours = by_id[str(official["event_id"])]
            assert official["traveller"]["document"]["number"] == ours["traveller"]["document"]["number"]
            assert official["occurred_at"] == ours["occurred_at"]
            checked += 1
    assert checked == len(good)


def test_official_serializer_output_decodes_with_lintas(stack: Stack, settings: Settings) -> None:
    registry = clients.registry(settings, Role.ADMIN)
    record = _simulate(seed=22, n=20)[0]
    serializer = AvroSerializer(registry, CROSSING_EVENT.schema_str)
    data = serializer(record, SerializationContext(CROSSING_EVENTS.name, MessageField.VALUE))
    decoded = decode(data, CROSSING_EVENT, SchemaIds(registry))
    assert decoded["event_id"] == record["event_id"]
    assert decoded["traveller"] == record["traveller"]


def test_kcat_decodes_avro_through_the_registry(stack: Stack, settings: Settings) -> None:
    features = subprocess.run(["kcat", "-V"], capture_output=True, text=True, check=True).stdout
    if "avro" not in features.lower():
        pytest.skip("Debian's kcat is built without Avro (no libserdes in Debian): `kcat -V` lists "
                    f"{features.strip().splitlines()[-1]}")
    out = subprocess.run(["kcat", "-F", str(write_kcat_config(settings, Role.ADMIN)), "-C", "-t", CROSSING_EVENTS.name, "-c", "1", "-e",
                          "-s", "value=avro", "-r", settings.schema_registry_url],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert "event_id" in out


def test_broker_outage_mid_stream_loses_nothing_and_keeps_post_order(stack: Stack, settings: Settings,
                                                                      tmp_path: Path) -> None:
    records = _simulate(seed=23, n=3000)
    spool = Spool(tmp_path / "outbox.sqlite")
    assert accept_records(records, "crossing", spool) == 3000
    forwarder = Forwarder(settings, spool, window=200)
    result: dict[str, bool] = {}
    pumping = threading.Thread(target=lambda: result.setdefault("done", forwarder.pump(timeout_s=240)))
    pumping.start()
    broker = stack.kafka.processes()[0]
    try:
        deadline = time.monotonic() + 60
        while forwarder.delivered < 600 and time.monotonic() < deadline:
            time.sleep(0.01)
        broker.stop()
        stopped_at = forwarder.delivered
        time.sleep(5)
    finally:
        broker.start(timeout_s=90)
    pumping.join(260)
    forwarder.close()
    assert result.get("done") is True
    assert 0 < stopped_at < 3000, "the outage must fall mid-stream"
    assert spool.pending() == 0

    wanted = {r["event_id"] for r in records}
    found = _event_ids(settings, wanted)
    assert {f[0] for f in found} == wanted  # every accepted event arrived
    # One post's events share a partition; in offset order they keep the order the post accepted them.
    position = {r["event_id"]: i for i, r in enumerate(records)}
    for post in {r["post"]["post_id"] for r in records}:
        order = list(dict.fromkeys(position[e] for e, p, *_ in found if p == post))  # first arrival of each id
        assert order == sorted(order), f"events of {post} out of order"


def test_producer_killed_after_accepting_loses_nothing(stack: Stack, settings: Settings, tmp_path: Path) -> None:
    records = _simulate(seed=24, n=1500)
    path = tmp_path / "crossings.jsonl"
    path.write_text("\n".join(to_json_line(r) for r in records) + "\n")
    outbox = tmp_path / "outbox.sqlite"
    broker = stack.kafka.processes()[0]
    broker.stop()
    try:
        proc = _lintas(settings, "produce", str(path), "--type", "crossing", "--spool", str(outbox),
                       "--wait", "600", start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if outbox.exists() and Spool(outbox).pending() == 1500:
                break
            time.sleep(0.2)
        assert Spool(outbox).pending() == 1500, "the producer never accepted the file"
        os.killpg(proc.pid, signal.SIGKILL)  # a crash, not a shutdown
        proc.wait(10)
    finally:
        broker.start(timeout_s=90)
    forward = _lintas(settings, "forward", "--spool", str(outbox), "--wait", "120")
    out, err = forward.communicate(timeout=180)
    assert forward.returncode == 0, err
    assert Spool(outbox).pending() == 0
    found = _event_ids(settings, {r["event_id"] for r in records})
    assert {f[0] for f in found} == {r["event_id"] for r in records}
