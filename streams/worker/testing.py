"""In-memory stand-ins for Kafka and ClickHouse, to run the worker's handlers without a broker or a server.

What bytewax's ``testing`` module is to its dataflows: the unit tests and the handler benchmark
build the real pipeline (:func:`streams.worker.stages.assemble`) over these with
:class:`MemoryWorker`, feed it :class:`~streams.worker.runtime.Record` batches through the same
effect order the worker follows, and read back what was sent and written.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import murmur2
from confluent_kafka.schema_registry._sync.mock_schema_registry_client import MockSchemaRegistryClient

from agents.ingest import TemplatePolicy
from agents.keys import Purposes
from agents.sealing import SubjectSealer
from agents.vault import Recent
from schemas.wire import SchemaIds
from streams.keystores import FileKeyring, SqliteSubjectKeys
from streams.posts import RegistryFile
from streams.settings import Settings
from streams.topics import ALL_TOPICS
from streams.worker.effects import Headers
from streams.worker.lanes import Lanes
from streams.worker.runtime import BatchHandler, Record
from streams.worker.services import Services, ThresholdsFile
from streams.worker.stages import Pipeline, assemble, stage


@dataclass
class Sent:
    """One record a handler's effects sent."""

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
        self.waited = 0.0

    def send(self, topic: str, value: bytes | None, key: bytes | None = None, partition: int | None = None,
             headers: Headers | None = None) -> None:
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
    """Rows by table, as the effects wrote them."""

    def __init__(self) -> None:
        """No rows yet."""
        self.rows: dict[str, list[dict[str, Any]]] = {}

    def write(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Keep the rows."""
        self.rows.setdefault(table, []).extend(rows)

    def query(self, sql: str, parameters: dict[str, Any]) -> list[dict[str, Any]]:
        """No ClickHouse here."""
        raise AssertionError("no ClickHouse read expected")


def memory_services(state_dir: Path, post_keys: Callable[[str], bytes | None], *, dimension: int = 512,
                    quality_floor: float = 0.3) -> Services:
    """The worker's services over a temporary state directory, an in-memory registry and sink, and no watchlists."""
    settings = Settings(state_dir=state_dir, dedup_dimension=dimension, dedup_quality_floor=quality_floor)
    keyring = FileKeyring(settings.keyring_path)
    return Services(
        settings=settings, ids=SchemaIds(MemoryRegistry({"url": "mock://lintas"})), keyring=keyring,
        keys=Purposes.from_provider(keyring), sink=MemorySink(), lanes=Lanes(settings),
        sealer=SubjectSealer(SqliteSubjectKeys(settings.subject_keys_path)), vaulted=Recent(),
        templates=TemplatePolicy(dimension, quality_floor), watchlists=NoLists(),
        post_keys=post_keys, posts=RegistryFile(settings).current,
        thresholds=ThresholdsFile(settings.dedup_thresholds_path))


class MemoryWorker:
    """The worker's pipeline over in-memory senders (one per agent) and sink: :meth:`handle` is one batch's turn."""

    def __init__(self, svc: Services) -> None:
        """Every handler and table over ``svc``; the tables' changelogs are what their agents sent."""
        self.services = svc
        self.senders: dict[str, MemorySender] = {}
        self.pipeline: Pipeline = assemble(svc, self.sender, self.read)

    @property
    def sink(self) -> MemorySink:
        """The rows written."""
        return self.services.sink  # type: ignore[return-value]

    def handler(self, name: str) -> BatchHandler:
        """Agent ``name``'s handler."""
        return self.pipeline.handlers[name]

    async def handle(self, name: str, records: list[Record]) -> None:
        """One batch through agent ``name``, its effects made to hold as the worker does them."""
        await self.pipeline.handle(stage(name), records)

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
