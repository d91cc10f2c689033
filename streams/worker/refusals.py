"""Agents ``refusals_crossings`` and ``refusals_landings``: lines refused at a post, counted in ``dead_letters``.

A post's gateway refuses a line that is not a valid event of a registered post and sends it to
the input's dead-letter topic (:mod:`streams.post.producer`); ingest writes its own dead letters'
rows as it makes them, so these agents write a row only for what a post refused
(:func:`agents.dead_letters.refusal_row`), keyed by where the envelope sits, which makes a replay
harmless. An envelope that cannot be read is counted and left: a dead letter is not dead-lettered.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from agents.audit import Processing
from agents.dead_letters import refusal_row
from schemas.contracts import DEAD_LETTER
from schemas.errors import InvalidMessage
from schemas.wire import decode
from streams.topics import TopicSpec
from streams.worker.effects import Effects
from streams.worker.runtime import Record, batch_source
from streams.worker.services import Services

log = logging.getLogger("lintas.worker")


class Refusals:
    """One dead-letter topic's refusals (crossings' or landings')."""

    def __init__(self, svc: Services, name: str, dlq: TopicSpec) -> None:
        """Agent ``name`` reads ``dlq``."""
        self.svc, self.name, self.dlq = svc, name, dlq
        self.io = svc.lanes(name)

    def revoked(self, partitions: set[int]) -> None:
        """Nothing is held per partition."""

    async def process(self, records: list[Record]) -> Effects:
        """A row for each line a post refused; nothing for the pipeline's own dead letters."""
        effects, now, unreadable = Effects(), datetime.now(UTC), 0
        await self.io(self.svc.ids.prefetch, [r.value for r in records])
        rows = []
        for r in records:
            try:
                envelope = decode(r.value, DEAD_LETTER, self.svc.ids)
            except InvalidMessage:
                unreadable += 1
                continue
            if (row := refusal_row(envelope, self.dlq.name, r.partition, r.offset, now)) is not None:
                rows.append(row)
        if unreadable:
            log.warning("%s: %d record(s) on %s are not DeadLetter envelopes; left as they are", self.name,
                        unreadable, self.dlq.name)
        effects.write("dead_letters", rows)
        effects.record(Processing(
            component=self.name, activity="store", purpose="operations", data_classes=("PUBLIC",),
            records=len(rows), source=batch_source(records), destination="clickhouse:dead_letters",
            detail=f"lines refused at a post; {unreadable} unreadable"))
        return effects
