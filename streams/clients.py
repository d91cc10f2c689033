"""Every client Lintas opens to Kafka, the schema registry and ClickHouse, configured in this one place.

Like quix-streams' ``ConnectionConfig.as_librdkafka_dict()``: the connection part of each
librdkafka dictionary (servers, and later security) is built by :func:`kafka_config`; the
callers add only what their role needs (idempotence, transactions, a group). Nothing here
connects until the client is used, except clickhouse-connect, which checks the server when
its client is created.
"""

from __future__ import annotations

from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient

from streams.settings import Settings

# murmur2: the partitioner Faust's producer (aiokafka) and Java clients use, so a record keyed like
# another one lands on the same partition whichever client sent it
SAME_PARTITION_AS_FAUST = {"partitioner": "murmur2_random"}
RELIABLE = {"acks": "all", "enable.idempotence": True}


def kafka_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """The librdkafka connection settings of the cluster in ``settings``, with the caller's ``extra`` on top."""
    return {"bootstrap.servers": settings.kafka_bootstrap, "log_level": 3, **extra}


def producer(settings: Settings, **extra: Any) -> Producer:
    """A confluent-kafka producer; acks=all and idempotent unless ``extra`` says otherwise."""
    return Producer(kafka_config(settings, **{**RELIABLE, **extra}))


def consumer(settings: Settings, group: str, **extra: Any) -> Consumer:
    """A confluent-kafka consumer in ``group`` that never commits on its own."""
    return Consumer(kafka_config(settings, **{"group.id": group, "enable.auto.commit": False, **extra}))


def admin(settings: Settings) -> AdminClient:
    """A confluent-kafka admin client."""
    return AdminClient(kafka_config(settings))


def registry(settings: Settings) -> SchemaRegistryClient:
    """A client of the Confluent-compatible schema registry."""
    return SchemaRegistryClient({"url": settings.schema_registry_url})


def clickhouse_client(settings: Settings, *, readonly: bool = False, database: str | None = None,
               **extra: Any) -> Client:
    """A clickhouse-connect client as the pipeline's read-write user, or as the read-only dashboard user."""
    user, secret = (("clickhouse_readonly_user", "clickhouse_readonly_password") if readonly
                    else ("clickhouse_user", "clickhouse_password"))
    return clickhouse_connect.get_client(
        host=settings.clickhouse_host, port=settings.clickhouse_port, username=getattr(settings, user),
        password=settings.secret(secret), database=database or settings.clickhouse_database, **extra,
    )
