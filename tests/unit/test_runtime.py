"""The batch agent's commits, without a broker: a commit refused during a rebalance is made once the group settles."""

from __future__ import annotations

import asyncio
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from streams.settings import Settings
from streams.worker.effects import Effects
from streams.worker.lanes import Lane
from streams.worker.runtime import BatchAgent, Record
from streams.worker.testing import MemorySender, MemorySink


class NothingToDo:
    async def process(self, records: list[Record]) -> Effects:
        """Nothing to do."""
        return Effects()

    def revoked(self, partitions: set[int]) -> None:
        """Nothing held."""


class Consumer:
    """Refuses the first ``refusals`` commits as Kafka does while the group's generation changes."""

    def __init__(self, refusals: int) -> None:
        self.refusals, self.committed = refusals, {}

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        if self.refusals:
            self.refusals -= 1
            raise KafkaException(KafkaError(KafkaError.ILLEGAL_GENERATION))
        self.committed.update({tp.partition: tp.offset for tp in offsets})


def _agent(tmp_path: Path) -> BatchAgent:
    settings = Settings(state_dir=tmp_path)
    agent = BatchAgent("rules", "g", "t", NothingToDo(), MemorySender(), Lane("rules", settings),
                       MemorySink().write, settings, size=10, within=0.1)
    agent.assigned = {0, 1}
    return agent


def _records(partition: int, offsets: range) -> list[Record]:
    return [Record("t", partition, o, 0.0, None, b"") for o in offsets]


def test_a_refused_commit_of_partitions_still_ours_is_made_later(tmp_path: Path) -> None:
    agent, consumer = _agent(tmp_path), Consumer(refusals=1)

    async def run() -> None:
        await agent._commit(consumer, _records(0, range(5)) + _records(1, range(3)))  # type: ignore[arg-type]
        assert consumer.committed == {}
        await agent._commit(consumer, [])  # type: ignore[arg-type]  # the loop's next turn, no new records

    asyncio.run(run())
    assert consumer.committed == {0: 5, 1: 3}


def test_a_refused_commit_of_a_partition_that_moved_is_left_to_its_next_owner(tmp_path: Path) -> None:
    agent, consumer = _agent(tmp_path), Consumer(refusals=1)

    async def run() -> None:
        await agent._commit(consumer, _records(0, range(5)) + _records(1, range(3)))  # type: ignore[arg-type]
        agent._on_revoke(consumer, [TopicPartition("t", 1)])  # type: ignore[arg-type]
        await agent._commit(consumer, _records(0, range(5, 7)))  # type: ignore[arg-type]

    asyncio.run(run())
    assert consumer.committed == {0: 7}
