"""In-memory stand-ins for Kafka and ClickHouse, to run the worker's handlers without a broker or a server.

What bytewax's ``testing`` module is to its dataflows: the unit tests and the handler
benchmark build the real handlers (:func:`streams.worker.handlers.handlers`) over these, feed
them :class:`~streams.worker.runtime.Record` batches and read back what was sent and written.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import murmur2
from confluent_kafka.schema_registry._sync.mock_schema_registry_client import MockSchemaRegistryClient

from agents.cases import CaseState
from agents.links import LinkState
from agents.overstay import StayState
from agents.trafficking.state import KeyState
from streams.topics import (
    ALL_TOPICS,
    BIOMETRIC_PAIRS,
    CASE_COMMANDS,
    CASE_STATE_TABLE,
    LINK_STATE_TABLE,
    STAY_STATE_TABLE,
    TRAFFICKING_FACTS,
    TRAFFICKING_STATE_TABLE,
    changelog_of,
)
from streams.worker.handlers import Outlets
from streams.worker.runtime import Record
from streams.worker.state import ChangelogTable


@dataclass
class Sent:
    """One record a handler sent."""

    topic: str
    value: bytes | None
    key: bytes | None = None
    partition: int | None = None
    headers: dict[str, bytes] = field(default_factory=dict)


class MemorySender:
    """Records every send by topic; every flush succeeds at once."""

    def __init__(self, name: str = "test") -> None:
        """An empty record of sends."""
        self.name = name
        self.sent: dict[str, list[Sent]] = defaultdict(list)
        self.flushes = 0

    def send(self, topic: str, value: bytes | None, key: bytes | None = None, partition: int | None = None,
             headers: list[tuple[str, bytes]] | None = None) -> None:
        """Keep the record."""
        self.sent[topic].append(Sent(topic, value, key, partition, dict(headers or [])))

    async def flush(self) -> None:
        """Nothing to wait for."""
        self.flushes += 1


class MemoryRegistry(MockSchemaRegistryClient):
    """confluent-kafka's in-memory schema registry, with the compatibility level it does not keep."""

    def get_compatibility(self, subject_name: str | None = None) -> str:
        """Every subject is FULL_TRANSITIVE, as Lintas sets it."""
        return "FULL_TRANSITIVE"


class NoLists:
    """Watchlists that are read to their end and list nobody."""

    class _Ready:
        def is_set(self) -> bool:
            return True

    ready = _Ready()

    def start(self) -> None:
        """Nothing to follow."""

    def lookup(self, token: str) -> list[Any]:
        """Nobody is listed."""
        return []

    def sizes(self) -> dict[str, int]:
        """Entries per list: none."""
        return {"lost_stolen": 0}


class MemorySink:
    """Rows by table, as the handlers wrote them."""

    def __init__(self) -> None:
        """No rows yet."""
        self.rows: dict[str, list[dict[str, Any]]] = {}

    def write(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Keep the rows."""
        self.rows.setdefault(table, []).extend(rows)

    def client(self) -> Any:
        """No ClickHouse here."""
        raise AssertionError("no ClickHouse read expected")


class MemoryOutlets:
    """One :class:`MemorySender` per agent (every topic's sends also in :attr:`sent`) and empty state tables."""

    def __init__(self) -> None:
        """Tables over changelogs that hold what was sent to them; their writes go to the owning agent's sender."""
        self.senders: dict[str, MemorySender] = {}

        def table(name: str, kind: Any, partitions: int, owner: str) -> ChangelogTable[Any]:
            return ChangelogTable(name, changelog_of(name).name, partitions, kind.from_bytes,
                                  lambda state: state.to_bytes(), self.sender(owner).send, self.read)

        self.outlets = Outlets(
            trafficking_state=table(TRAFFICKING_STATE_TABLE, KeyState, TRAFFICKING_FACTS.partitions,
                                    "trafficking_rules"),
            stay_state=table(STAY_STATE_TABLE, StayState, TRAFFICKING_FACTS.partitions, "trafficking_rules"),
            link_state=table(LINK_STATE_TABLE, LinkState, BIOMETRIC_PAIRS.partitions, "dedup_links"),
            case_state=table(CASE_STATE_TABLE, CaseState, CASE_COMMANDS.partitions, "cases"),
            sender=self.sender, read=self.read)

    def read(self, topic: str, partition: int) -> list[tuple[bytes | None, bytes | None]]:
        """What was sent to one partition of a compacted topic (a changelog, the gallery), oldest first."""
        return [(r.key, r.value) for r in self.sent(topic) if (r.partition or 0) == partition]

    def sender(self, name: str) -> MemorySender:
        """The agent's sender (made on first use)."""
        if name not in self.senders:
            self.senders[name] = MemorySender(name)
        return self.senders[name]

    def sent(self, topic: str) -> list[Sent]:
        """Every record sent to ``topic``, by any agent, in the order each agent sent them."""
        return [s for sender in self.senders.values() for s in sender.sent.get(topic, [])]


def records(topic: str, sent: list[Sent], *, first_offset: int = 0, timestamp: float = 0.0) -> list[Record]:
    """What an agent reading ``topic`` would consume of ``sent``: one record each, offsets counted per partition."""
    offsets: dict[int, int] = defaultdict(lambda: first_offset)
    partitions = next((t.partitions for t in ALL_TOPICS if t.name == topic), 1)
    out = []
    for s in sent:
        partition = s.partition if s.partition is not None else int(murmur2(s.key, partitions)) if s.key else 0
        out.append(Record(topic, partition, offsets[partition], timestamp, s.key, s.value))
        offsets[partition] += 1
    return out
