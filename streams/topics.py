"""Every Kafka topic of Lintas, declared once.

The local stack creates these (``lintas stack up``), the Faust app declares its
topics from them, and ops read them here. Nothing else names a topic by string.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True)
class TopicSpec:
    """One topic: name, partitions, retention and cleanup policy."""

    name: str
    partitions: int
    retention_ms: int
    cleanup_policy: str = "delete"
    doc: str = ""
    extra_config: dict[str, str] = field(default_factory=dict)

    @property
    def dlq(self) -> str:
        """Name of this topic's dead-letter topic."""
        return f"{self.name}.dlq"

    def config(self) -> dict[str, str]:
        """Topic-level Kafka config."""
        return {
            "cleanup.policy": self.cleanup_policy,
            "retention.ms": str(self.retention_ms),
            **self.extra_config,
        }


# Raw border-post input carries personal data: short retention, restricted access.
CROSSING_EVENTS = TopicSpec(
    "crossing_events", partitions=6, retention_ms=7 * DAY_MS,
    doc="Crossing events from border posts (Avro, contains personal data).",
)
LANDING_EVENTS = TopicSpec(
    "landing_events", partitions=3, retention_ms=7 * DAY_MS,
    doc="Maritime landing events (Avro, contains personal data).",
)
# Dead letters keep the raw bytes for repair, so they share the source's retention.
CROSSING_EVENTS_DLQ = TopicSpec(
    CROSSING_EVENTS.dlq, partitions=1, retention_ms=7 * DAY_MS,
    doc="Crossing events that failed decoding or validation, with the reason.",
)
LANDING_EVENTS_DLQ = TopicSpec(
    LANDING_EVENTS.dlq, partitions=1, retention_ms=7 * DAY_MS,
    doc="Landing events that failed decoding or validation, with the reason.",
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    CROSSING_EVENTS,
    LANDING_EVENTS,
    CROSSING_EVENTS_DLQ,
    LANDING_EVENTS_DLQ,
)
