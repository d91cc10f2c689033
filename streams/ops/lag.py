"""How far each batch agent is behind its topic, from Kafka alone: committed offsets against the partitions' ends.

An agent commits a batch only once its rows are in ClickHouse and its sends in Kafka, so
"committed to the end" means "done". This reads no ClickHouse and joins no group: what
benchmarks and tests wait on (ops see the same with ``lintas kafka consumer-groups --describe``).
The worker's own view, position against the end as of its last fetch, goes to ``consumer_lag``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec

from schemas.errors import LintasError
from streams import clients
from streams.settings import Settings
from streams.topics import AGENTS, Role, agent_group


class NotCaughtUp(LintasError):
    """Agents still behind when the wait ended."""

    code = "not_caught_up"


def lag(settings: Settings, agents: Iterable[str] = tuple(AGENTS)) -> dict[str, int]:
    """Records each agent has not committed yet, summed over its topic's partitions (-1: its group not readable).

    One admin client asks every group's committed offsets and every partition's ends at once: a client
    per agent cost a TLS and SASL handshake each, about 60 ms of CPU per agent per call.
    """
    names = tuple(agents)
    admin = clients.admin(settings, Role.OPS)
    parts = {name: [TopicPartition(AGENTS[name].name, p) for p in range(AGENTS[name].partitions)] for name in names}
    committed = {name: admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(agent_group(name), parts[name])],
                                                         request_timeout=10)[agent_group(name)] for name in names}
    every = {TopicPartition(tp.topic, tp.partition): None for tps in parts.values() for tp in tps}
    earliest = admin.list_offsets({tp: OffsetSpec.earliest() for tp in every}, request_timeout=10)
    latest = admin.list_offsets({tp: OffsetSpec.latest() for tp in every}, request_timeout=10)
    out = {}
    for name in names:
        try:
            done = committed[name].result().topic_partitions
        except KafkaException:  # the group's coordinator is still being chosen: not settled
            out[name] = -1
            continue
        behind = 0
        for tp in done:
            key = TopicPartition(tp.topic, tp.partition)
            low, end = earliest[key].result().offset, latest[key].result().offset
            behind += end - max(tp.offset, low) if end > 0 else 0
        out[name] = behind
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
