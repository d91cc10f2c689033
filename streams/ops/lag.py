"""How far each batch agent is behind its topic, from Kafka alone: committed offsets against the partitions' ends.

An agent commits a batch only once its rows are in ClickHouse and its sends in Kafka, so
"committed to the end" means "done". This reads no ClickHouse and joins no group: what
benchmarks and tests wait on (ops see the same with ``lintas kafka consumer-groups --describe``).
The worker's own view, position against the end as of its last fetch, goes to ``consumer_lag``.
A consumer per agent and not one admin client: the admin client's offset fetch can crash the
process when the group's coordinator moves (librdkafka, confluent-kafka-python #1982).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaException, TopicPartition

from schemas.errors import LintasError
from streams import clients
from streams.settings import Settings
from streams.topics import AGENTS, Role, agent_group


class NotCaughtUp(LintasError):
    """Agents still behind when the wait ended."""

    code = "not_caught_up"


def lag(settings: Settings, agents: Iterable[str] = tuple(AGENTS)) -> dict[str, int]:
    """Records each agent has not committed yet, summed over its topic's partitions (-1: its group not readable)."""
    out = {}
    for agent in agents:
        topic = AGENTS[agent]
        consumer = Consumer(clients.kafka_config(settings, Role.OPS, **{"group.id": agent_group(agent),
                                                              "enable.auto.commit": False}))
        try:
            parts = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
            try:
                committed = consumer.committed(parts, timeout=10)
            except KafkaException:  # the group's coordinator is still being chosen: not settled
                out[agent] = -1
                continue
            behind = 0
            for tp in committed:
                low, end = consumer.get_watermark_offsets(tp, timeout=10)
                behind += end - max(tp.offset, low) if end > 0 else 0
            out[agent] = behind
        finally:
            consumer.close()
    return out


def caught_up(settings: Settings, agents: Iterable[str] = tuple(AGENTS), timeout_s: float = 600.0,
              poll_s: float = 0.5, quiet: int = 2) -> float:
    """Wait until the agents have committed everything, ``quiet`` checks in a row; the seconds it took."""
    names, t0 = tuple(agents), time.monotonic()
    calm, last = 0, {}
    while time.monotonic() - t0 < timeout_s:
        last = lag(settings, names)
        calm = calm + 1 if all(v == 0 for v in last.values()) else 0
        if calm >= quiet:
            return time.monotonic() - t0
        time.sleep(poll_s)
    behind = ", ".join(f"{a} {n:,}" for a, n in last.items() if n)
    raise NotCaughtUp(f"after {timeout_s:.0f}s still behind: {behind}")
