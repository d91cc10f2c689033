"""A message Lintas could not accept, kept whole with the reason: the dead-letter envelope and its analytics row.

Bad input is never skipped: wherever it is stopped (a line at a post's gateway, a message at
ingest, an officer's decision), it becomes a :class:`DeadLetter` on the dead-letter topic of its
source, naming the field and the reason, never the value, and a row in ``dead_letters``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from schemas.contracts import DEAD_LETTER
from schemas.errors import InvalidMessage
from schemas.wire import encode_payload


@dataclass(frozen=True)
class Source:
    """Where a message sits in Kafka."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int


@dataclass(frozen=True)
class DeadLetter:
    """A rejected message with the first reason; ``payload`` is the raw value (restricted topic only)."""

    source: Source
    error_code: str
    error_field: str
    reason: str
    payload: bytes

    @classmethod
    def from_error(cls, source: Source, err: InvalidMessage, payload: bytes | None,
                   field: str | None = None) -> DeadLetter:
        """The dead letter of a bad message: the error's code, field (or ``field``) and reason, the raw bytes."""
        return cls(source, err.code, err.field if field is None else field, err.reason, payload or b"")

    def record(self, now: datetime) -> dict[str, Any]:
        """The DeadLetter Avro record for the dead-letter topic."""
        return {
            "source_topic": self.source.topic, "source_partition": self.source.partition,
            "source_offset": self.source.offset,
            "source_timestamp": datetime.fromtimestamp(self.source.timestamp_ms / 1000, tz=UTC),
            "error_code": self.error_code, "error_field": self.error_field, "reason": self.reason,
            "payload": self.payload, "failed_at": now,
        }

    def row(self, now: datetime) -> dict[str, Any]:
        """The dead_letters analytics row: where and why, never the bytes."""
        return {
            "source_topic": self.source.topic, "source_partition": self.source.partition,
            "source_offset": self.source.offset, "error_code": self.error_code, "error_field": self.error_field,
            "reason": self.reason, "produced_at": datetime.fromtimestamp(self.source.timestamp_ms / 1000, tz=UTC),
            "ingested_at": now,
        }

    def headers(self) -> list[tuple[str, bytes]]:
        """Kafka headers for ops tooling: codes and coordinates only, no personal data."""
        return [("lintas.error.code", self.error_code.encode()), ("lintas.error.field", self.error_field.encode()),
                ("lintas.source", f"{self.source.topic}/{self.source.partition}/{self.source.offset}".encode())]



def dead_letter_payload(letter: DeadLetter, now: datetime) -> bytes:
    """Avro binary of the envelope (framed by the caller with the registry id)."""
    return encode_payload(DEAD_LETTER, letter.record(now))


REFUSED_PARTITION = -1  # a line refused at a post never had a partition; its source offset is its line number
_CODE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_FIELD = re.compile(r"^[A-Za-z0-9_.\[\]()-]{0,128}$")


def refusal_row(envelope: dict[str, Any], dlq: str, partition: int, offset: int,
                now: datetime) -> dict[str, Any] | None:
    """The ``dead_letters`` row of a line refused at a post, keyed by where its envelope sits on ``dlq``.

    ``None`` for an envelope the pipeline made (its row was written with it). The code, field and
    reason are a post's word: a code or field that is not of the shape Lintas writes is replaced,
    and the reason is cut, so a row cannot carry more than a refusal says.
    """
    if envelope["source_partition"] != REFUSED_PARTITION:
        return None
    code = envelope["error_code"] if _CODE.match(envelope["error_code"]) else "refused_at_post"
    field = envelope["error_field"] if _FIELD.match(envelope["error_field"]) else ""
    return {"source_topic": dlq, "source_partition": partition, "source_offset": offset, "error_code": code,
            "error_field": field, "reason": f"refused at the post, line {envelope['source_offset']}: "
                                           f"{envelope['reason'][:200]}",
            "produced_at": envelope["failed_at"], "ingested_at": now}
