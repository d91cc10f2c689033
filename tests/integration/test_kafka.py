"""Kafka of the local stack: ops tools, both client libraries, consumer groups, offsets."""

from __future__ import annotations

import asyncio
import re
import subprocess
import threading
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as CkTopicPartition

from infra.kafka import write_kcat_config
from infra.stack import Stack
from streams import clients
from streams.clients import aiokafka_security, kafka_config
from streams.settings import Settings
from streams.topics import ALL_TOPICS, Role
from tests.integration.conftest import run_lintas

pytestmark = pytest.mark.integration

N_MESSAGES = 600


def _create_topic(settings: Settings, name: str, partitions: int = 3) -> None:
    from confluent_kafka.admin import NewTopic as CkNewTopic

    admin = clients.admin(settings)
    admin.create_topics([CkNewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result(30)
    # Consumers must only subscribe once every partition has a leader.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        meta = admin.list_topics(name, timeout=5).topics[name]
        if meta.error is None and len(meta.partitions) == partitions and all(
            p.leader >= 0 for p in meta.partitions.values()
        ):
            return
        time.sleep(0.2)
    raise AssertionError(f"topic {name} never got leaders")


def test_kcat_lists_broker_and_declared_topics(stack: Stack, settings: Settings) -> None:
    out = subprocess.run(
        ["kcat", "-F", str(write_kcat_config(settings)), "-L", "-m", "10"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    assert re.search(rf"broker 1 at 127\.0\.0\.1:{settings.kafka_port}", out), out
    for topic in ALL_TOPICS:
        assert f'topic "{topic.name}" with {topic.partitions} partitions' in out


def test_kafka_topics_cli_lists_declared_topics(stack: Stack, settings: Settings) -> None:
    result = run_lintas(settings, "kafka", "topics", "--list")
    assert result.returncode == 0, result.stderr
    listed = set(result.stdout.split())
    assert {t.name for t in ALL_TOPICS} <= listed
    described = run_lintas(settings, "kafka", "topics", "--describe", "--topic", ALL_TOPICS[0].name)
    assert f"PartitionCount: {ALL_TOPICS[0].partitions}" in described.stdout
    assert f"retention.ms={ALL_TOPICS[0].retention_ms}" in described.stdout


def _consume_as_group(
    settings: Settings, topic: str, group: str, expected: int,
) -> tuple[list[set[int]], list[int], list[threading.Thread], threading.Event]:
    """Start two confluent-kafka consumers in one group; returns their partitions, the values, threads and stop flag."""
    values: list[int] = []
    assignments: list[set[int]] = [set(), set()]
    lock = threading.Lock()
    stop = threading.Event()

    def member(i: int) -> None:
        consumer = Consumer({
            **kafka_config(settings, Role.ADMIN),
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 1000,
            "partition.assignment.strategy": "range",
        })
        consumer.subscribe([topic])
        try:
            while not stop.is_set():
                msg = consumer.poll(0.2)
                if msg is None or msg.error():
                    continue
                with lock:
                    values.append(int(msg.value()))
                    assignments[i].add(msg.partition())
                    if len(values) >= expected:
                        stop.set()
                consumer.commit(message=msg, asynchronous=False)
        finally:
            consumer.close()

    # Both members join before any message is produced, so the group splits the partitions between them.
    threads = [threading.Thread(target=member, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    return assignments, values, threads, stop


def test_confluent_group_of_two_consumes_every_message_once(settings: Settings, unique_topic: str) -> None:
    _create_topic(settings, unique_topic)
    group = f"{unique_topic}-group"
    assignments, values, threads, stop = _consume_as_group(settings, unique_topic, group, N_MESSAGES)
    time.sleep(8)  # let both members join and rebalance (session timeout 6 s)
    producer = Producer({**kafka_config(settings, Role.ADMIN), "enable.idempotence": True, "acks": "all"})
    for i in range(N_MESSAGES):
        producer.produce(unique_topic, key=str(i).encode(), value=str(i).encode())
    assert producer.flush(30) == 0
    for t in threads:
        t.join(90)
    stop.set()
    assert sorted(values) == list(range(N_MESSAGES))
    assert assignments[0] and assignments[1], f"one member got no partition: {assignments}"
    assert assignments[0].isdisjoint(assignments[1])
    assert assignments[0] | assignments[1] == {0, 1, 2}

    # Committed offsets equal the end offsets: what Faust and the ClickHouse sink recover from.
    probe = Consumer({**kafka_config(settings, Role.ADMIN), "group.id": group})
    committed = probe.committed([CkTopicPartition(unique_topic, p) for p in range(3)], timeout=10)
    ends = [probe.get_watermark_offsets(CkTopicPartition(unique_topic, p), timeout=10)[1] for p in range(3)]
    probe.close()
    assert [tp.offset for tp in committed] == ends
    assert sum(ends) == N_MESSAGES

    # Kafka's own consumer-groups tool agrees: lag 0 on every partition.
    described = run_lintas(settings, "kafka", "consumer-groups", "--describe", "--group", group)
    assert described.returncode == 0, described.stderr
    rows = [line.split() for line in described.stdout.splitlines() if line.startswith(group)]
    assert len(rows) == 3
    header = [line.split() for line in described.stdout.splitlines() if "LAG" in line][0]
    lag_col, end_col = header.index("LAG"), header.index("LOG-END-OFFSET")
    assert all(r[lag_col] == "0" for r in rows)
    assert sum(int(r[end_col]) for r in rows) == N_MESSAGES


async def test_aiokafka_group_of_two_consumes_every_message_once(settings: Settings, unique_topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, **aiokafka_security(settings, Role.ADMIN))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(unique_topic, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()
    await asyncio.sleep(1)
    group = f"{unique_topic}-group"

    def consumer() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            unique_topic, bootstrap_servers=settings.kafka_bootstrap, group_id=group,
            auto_offset_reset="earliest", enable_auto_commit=False,
            session_timeout_ms=6000, heartbeat_interval_ms=1000, **aiokafka_security(settings, Role.ADMIN),
        )

    members = [consumer(), consumer()]
    for m in members:
        await m.start()
    received: list[list[int]] = [[], []]

    async def drain(i: int) -> None:
        while sum(map(len, received)) < N_MESSAGES:
            batch = await members[i].getmany(timeout_ms=500)
            for records in batch.values():
                received[i].extend(int(r.value) for r in records)
            if batch:
                await members[i].commit()

    # Wait until the group has split the three partitions between the two members.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(m.assignment() for m in members):
        await asyncio.sleep(0.5)
    assert all(m.assignment() for m in members), "the group never gave both members partitions"

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True,
                                **aiokafka_security(settings, Role.ADMIN))
    await producer.start()
    try:
        for i in range(N_MESSAGES):
            await producer.send(unique_topic, key=str(i).encode(), value=str(i).encode())
        await producer.flush()
    finally:
        await producer.stop()
    await asyncio.wait_for(asyncio.gather(drain(0), drain(1)), 60)

    assert sorted(received[0] + received[1]) == list(range(N_MESSAGES))
    assert received[0] and received[1]
    tps = [TopicPartition(unique_topic, p) for p in range(3)]
    ends = await members[0].end_offsets(tps)
    for m in members:
        for tp in m.assignment():
            assert await m.committed(tp) == ends[tp]
    assert sum(ends.values()) == N_MESSAGES
    for m in members:
        await m.stop()
