"""The local registry through confluent-kafka's own SchemaRegistryClient, serializer and deserializer."""

from __future__ import annotations

import json

import pytest
from confluent_kafka.schema_registry import Schema
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from infra.stack import Stack
from streams import clients
from streams.settings import Settings
from streams.topics import Role

pytestmark = pytest.mark.integration


def _schema(*extra: dict) -> str:
    return json.dumps({
        "type": "record", "name": "RegistryProbe", "namespace": "id.lintas.test",
        "fields": [{"name": "id", "type": "string"}, *extra],
    })


def test_client_register_lookup_compatibility_and_restart(stack: Stack, settings: Settings) -> None:
    client = clients.registry(settings, Role.ADMIN)
    subject = "registry-probe-value"
    client.set_compatibility(subject, "FULL_TRANSITIVE")
    assert client.get_compatibility(subject) == "FULL_TRANSITIVE"

    v1 = Schema(_schema(), "AVRO")
    sid = client.register_schema(subject, v1)
    assert client.register_schema(subject, v1) == sid
    assert client.lookup_schema(subject, v1).version == 1

    optional = Schema(_schema({"name": "note", "type": ["null", "string"], "default": None}), "AVRO")
    required = Schema(_schema({"name": "count", "type": "int"}), "AVRO")
    assert client.test_compatibility(subject, optional) is True
    assert client.test_compatibility(subject, required) is False
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema(subject, required)
    assert refused.value.http_status_code == 409
    sid2 = client.register_schema(subject, optional)
    assert client.get_versions(subject) == [1, 2]
    assert client.get_latest_version(subject).schema_id == sid2

    with pytest.raises(SchemaRegistryError) as missing:
        client.get_latest_version("no-such-subject")
    assert missing.value.error_code == 40401

    # Records written under v1 stay readable after a registry restart: ids are durable.
    ctx = SerializationContext("registry-probe", MessageField.VALUE)
    payload = AvroSerializer(client, v1.schema_str, conf={"auto.register.schemas": False, "use.latest.version": False})(
        {"id": "x-1"}, ctx)
    proc = stack.registry.process()
    proc.stop()
    proc.start(timeout_s=30)
    fresh = clients.registry(settings, Role.ADMIN)
    assert fresh.get_schema(sid).schema_str == client.get_schema(sid).schema_str
    assert AvroDeserializer(fresh)(payload, ctx) == {"id": "x-1"}
    assert fresh.register_schema(subject, v1) == sid
