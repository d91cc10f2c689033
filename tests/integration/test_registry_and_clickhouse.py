"""Schema registry and ClickHouse of the local stack, through the clients the pipeline uses."""

from __future__ import annotations

import json

import numpy as np
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError
from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from infra.stack import Stack
from streams import clients
from streams.clients import clickhouse_client, kafka_config
from streams.settings import Settings
from streams.topics import Role
from tests.integration.test_kafka import _create_topic

pytestmark = pytest.mark.integration

PROBE_SCHEMA = json.dumps({
    "type": "record", "name": "StackProbe", "namespace": "id.lintas.test",
    "fields": [
        {"name": "probe_id", "type": "string"},
        {"name": "seq", "type": "long"},
        {"name": "score", "type": ["null", "double"], "default": None},
    ],
})


def test_avro_round_trip_through_registry_and_kafka(stack: Stack, settings: Settings, unique_topic: str) -> None:
    registry = clients.registry(settings, Role.ADMIN)
    serializer = AvroSerializer(registry, PROBE_SCHEMA)
    deserializer = AvroDeserializer(registry)
    _create_topic(settings, unique_topic, partitions=1)
    records = [{"probe_id": f"p{i}", "seq": i, "score": None if i % 2 else i / 3} for i in range(20)]
    ctx = SerializationContext(unique_topic, MessageField.VALUE)
    producer = Producer({**kafka_config(settings, Role.ADMIN), "acks": "all"})
    for record in records:
        producer.produce(unique_topic, value=serializer(record, ctx))
    assert producer.flush(30) == 0

    consumer = Consumer({
        **kafka_config(settings, Role.ADMIN), "group.id": f"{unique_topic}-g",
        "auto.offset.reset": "earliest",
    })
    consumer.subscribe([unique_topic])
    got = []
    while len(got) < len(records):
        msg = consumer.poll(10)
        assert msg is not None, f"only {len(got)} records came back"
        assert not msg.error()
        assert msg.value()[0] == 0, "not Confluent wire format (magic byte 0)"
        got.append(deserializer(msg.value(), ctx))
    consumer.close()
    assert got == records

    subject = f"{unique_topic}-value"
    latest = registry.get_latest_version(subject)
    assert latest.schema_id == int.from_bytes(serializer(records[0], ctx)[1:5], "big")
    assert json.loads(registry.get_schema(latest.schema_id).schema_str)["name"] == "StackProbe"


def test_clickhouse_replacing_merge_tree_100k_native_insert(stack: Stack, settings: Settings) -> None:
    client = clickhouse_client(settings)
    table = "stack_probe_rmt"
    admin = clickhouse_client(settings, migrate=True)  # DDL is the migration user's; the rows the pipeline's
    admin.command(f"DROP TABLE IF EXISTS {table}")
    admin.command(
        f"CREATE TABLE {table} (event_id UInt64, post LowCardinality(String), value Float64, version UInt32) "
        "ENGINE = ReplacingMergeTree(version) ORDER BY event_id"
    )
    n = 100_000
    ids = np.arange(n, dtype=np.uint64)
    rows = list(zip(ids.tolist(), [f"post-{i % 17}" for i in range(n)], (ids * 0.5).tolist(), [1] * n, strict=True))
    summary = client.insert(table, rows, column_names=["event_id", "post", "value", "version"])
    assert summary.written_rows == n
    assert client.query(f"SELECT count(), sum(event_id) FROM {table}").result_rows == [(n, n * (n - 1) // 2)]
    # A replayed batch (same ids, newer version) collapses: FINAL counts each event once.
    client.insert(table, [(r[0], r[1], r[2], 2) for r in rows[:1000]], column_names=["event_id", "post", "value", "version"])
    assert client.query(f"SELECT count() FROM {table} FINAL").result_rows == [(n,)]
    assert client.query(f"SELECT max(version) FROM {table} FINAL WHERE event_id < 1000").result_rows == [(2,)]
    by_post = client.query(
        f"SELECT post, count() FROM {table} FINAL WHERE post = {{post:String}} GROUP BY post",
        parameters={"post": "post-3"},
    ).result_rows
    assert by_post == [("post-3", len(range(3, n, 17)))]


def test_clickhouse_bad_query_has_error_code(stack: Stack, settings: Settings) -> None:
    client = clickhouse_client(settings)
    with pytest.raises(DatabaseError) as syntax:
        client.query("SELEC 1")
    assert "Code: 62" in str(syntax.value)
    with pytest.raises(DatabaseError) as missing:
        client.query("SELECT * FROM no_such_table_here")
    assert "Code: 60" in str(missing.value)


def test_clickhouse_readonly_user_reads_but_cannot_write(stack: Stack, settings: Settings) -> None:
    admin = clickhouse_client(settings, migrate=True)
    admin.command("CREATE TABLE IF NOT EXISTS ro_probe (x UInt8) ENGINE = MergeTree ORDER BY x")
    clickhouse_client(settings).insert("ro_probe", [(1,), (2,)], column_names=["x"])
    ro = clickhouse_client(settings, readonly=True)
    assert ro.query("SELECT sum(x) FROM ro_probe").result_rows == [(3,)]
    for statement in ("INSERT INTO ro_probe VALUES (9)", "DROP TABLE ro_probe", "CREATE TABLE ro2 (x UInt8) ENGINE = Memory"):
        with pytest.raises(DatabaseError) as refused:
            ro.command(statement)
        assert "Code: 164" in str(refused.value), statement
    assert admin.query("SELECT count() FROM ro_probe").result_rows == [(2,)]
