"""Ingest: raw Kafka bytes → a pseudonymised analytics row, or a dead letter with the reason.

Pure functions; the ingest agents' handler (:mod:`streams.worker.ingest`) calls
:func:`ingest` and returns what it gives as effects. Every row carries its source
partition and offset and the event id, so a replay replaces rather than doubles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from agents.biometric import Capture, captures, probe_template
from agents.dead_letters import DeadLetter, Source
from agents.gallery import TemplateRejected
from agents.keys import Purposes
from agents.posts import PostRegistry, sender_problems
from agents.pseudonymise import Tokeniser, crossing_row, landing_row
from agents.signing import sender_field, sent_by
from agents.trafficking.facts import Fact, crossing_facts, landing_facts
from agents.vault import identities
from agents.watchlist import Presented, presented
from schemas.contracts import CROSSING_EVENT, LANDING_EVENT, Contract
from schemas.validation import check_semantics
from schemas.wire import DecodeError, WriterSchemas, decode


@dataclass(frozen=True)
class EventKind:
    """How one input topic is ingested."""

    contract: Contract
    to_row: Callable[[dict[str, Any], Tokeniser], dict[str, Any]]
    to_facts: Callable[[dict[str, Any], dict[str, Any], Tokeniser], list[Fact]]
    table: str
    source: str
    to_check: Callable[[dict[str, Any], str], Presented | None] | None = None  # record, the traveller's token


CROSSINGS = EventKind(CROSSING_EVENT, crossing_row, crossing_facts, "crossings", "crossing", presented)
LANDINGS = EventKind(LANDING_EVENT, landing_row, landing_facts, "landings", "landing")


@dataclass(frozen=True)
class TemplatePolicy:
    """What a searchable template must be: its dimension and the lowest capture quality accepted."""

    dimension: int
    quality_floor: float


@dataclass(frozen=True)
class Accepted:
    """An accepted message: its row, captures, template dead letters, facts for the trafficking rules and people.

    ``people``: each person's operations token → the identity presented, for the vault;
    ``presented``: what the document and watchlist checks look at (crossings only).

    A bad template does not cost the crossing its row: the event is kept, the
    template alone goes to the dead-letter topic with the reason.
    """

    row: dict[str, Any]
    probes: list[tuple[Capture, np.ndarray]]
    letters: list[DeadLetter]
    facts: list[Fact]
    people: dict[str, dict[str, Any]]
    presented: Presented | None = None


def ingest(raw: bytes | None, source: Source, kind: EventKind, schemas: WriterSchemas, keys: Purposes,
           now: datetime, templates: TemplatePolicy, signed_by: str | None = None,
           posts: PostRegistry | None = None) -> Accepted | DeadLetter:
    """Decode, validate and pseudonymise one message; check its biometric templates.

    ``signed_by``: the post whose key signed the message (agents/signing.py); the event must claim that post.
    ``posts``: the registered posts (agents/posts.py); the event's post must be one, as registered.

    The analytics row is tokenised with the analytics key; probes and facts, which
    stay inside the pipeline, with the operations key.

    Raises ``RegistryUnavailable`` (retry later) but never for the message's own
    faults: those come back as a :class:`DeadLetter`.
    """
    try:
        record = decode(raw, kind.contract, schemas)
    except DecodeError as err:
        return DeadLetter.from_error(source, err, raw)
    problems = check_semantics(kind.contract.name, record, now)
    if problems:
        first = problems[0]
        return DeadLetter(source, first.code, first.field, first.reason, raw or b"")
    if signed_by is not None and sent_by(kind.contract.name, record) != signed_by:
        return DeadLetter(source, "not_the_signer", sender_field(kind.contract.name),
                          "names another post than the one that signed it", raw or b"")
    if posts is not None and (problems := sender_problems(kind.contract.name, record, posts)):
        first = problems[0]
        return DeadLetter(source, first.code, first.field, first.reason, raw or b"")
    row = kind.to_row(record, keys.analytics)
    row["source_partition"] = source.partition
    row["source_offset"] = source.offset
    row["produced_at"] = datetime.fromtimestamp(source.timestamp_ms / 1000, tz=UTC)
    probes, letters = [], []
    for cap in captures(record, kind.source, keys.operations):
        try:
            probes.append((cap, probe_template(cap, templates.dimension, templates.quality_floor)))
        except TemplateRejected as err:
            letters.append(DeadLetter.from_error(source, err, raw, field=f"{cap.field}.{err.field}"))
    facts = kind.to_facts(record, row, keys.operations)
    traveller = next((f.traveller for f in facts if f.role == "SELF"), None)  # the token, made once
    return Accepted(row, probes, letters, facts, identities(record, kind.source, keys.operations),
                    kind.to_check(record, traveller) if kind.to_check and traveller else None)
