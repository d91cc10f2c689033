"""`lintas stack up --brokers 3`: a three-node KRaft cluster with replication factor 3."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

from infra.process import port_is_bound
from infra.stack import Stack
from streams import clients
from streams.clients import kafka_config
from streams.topics import ALL_TOPICS, Role
from tests.conftest import stack_settings
from tests.integration.conftest import run_lintas

pytestmark = pytest.mark.integration

PORT_BASE = 23000  # below the ephemeral range (32768+), so no client socket can hold our ports


def test_three_brokers_replicate_and_survive_one_loss(tmp_path: Path) -> None:
    settings = stack_settings(tmp_path / "state", PORT_BASE, brokers=3)
    stack = Stack(settings)
    try:
        up = run_lintas(settings, "stack", "up", "--brokers", "3")
        assert up.returncode == 0, up.stdout + up.stderr
        admin = clients.admin(settings)
        meta = admin.list_topics(timeout=10)
        assert sorted(meta.brokers) == [1, 2, 3]
        for spec in ALL_TOPICS:
            partitions = meta.topics[spec.name].partitions
            assert len(partitions) == spec.partitions
            assert all(len(p.replicas) == 3 for p in partitions.values()), spec.name

        topic = f"test-{uuid.uuid4().hex[:8]}"
        from confluent_kafka.admin import NewTopic

        admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=3)])[topic].result(30)
        time.sleep(2)
        # Lose one node (SIGKILL): with min.insync.replicas=2, acks=all writes and reads go on.
        stack.kafka.processes()[2].kill()
        producer = Producer({
            **kafka_config(settings, Role.ADMIN), "acks": "all", "enable.idempotence": True,
        })
        for i in range(300):
            producer.produce(topic, key=str(i).encode(), value=str(i).encode())
        assert producer.flush(60) == 0
        consumer = Consumer({
            **kafka_config(settings, Role.ADMIN), "group.id": f"{topic}-g",
            "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
        })
        consumer.subscribe([topic])
        got = set()
        deadline = time.monotonic() + 90
        while len(got) < 300 and time.monotonic() < deadline:
            msg = consumer.poll(1)
            if msg is not None and not msg.error():
                got.add(int(msg.value()))
        consumer.close()
        assert got == set(range(300))
    finally:
        down = run_lintas(settings, "stack", "down")
    assert down.returncode == 0, down.stderr
    for node in (1, 2, 3):
        assert not port_is_bound("127.0.0.1", stack.kafka.client_port(node))
