"""Agent ``adjudications``: officers' decisions on links, checked against the link, passed to the link agent.

A decision (from ``biometric.adjudications``, or a link decision from ``review.decisions``)
is checked against the link as ClickHouse holds it (unknown, already decided, no officer,
before the link: a dead letter with the reason) and sent to ``biometric.pairs`` as a DECIDE
command, where the link agent applies it in its partition's order; the first decision stands.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from agents.biometric import LINK_COMMAND
from agents.dead_letters import DeadLetter
from agents.links import adjudicate
from schemas.contracts import ADJUDICATION_DECISION, Contract
from schemas.errors import InvalidMessage
from schemas.wire import avro_bytes, decode
from streams.topics import BIOMETRIC_ADJUDICATIONS_DLQ, BIOMETRIC_PAIRS
from streams.worker.effects import Effects
from streams.worker.outputs import Outputs
from streams.worker.runtime import Record, source_of
from streams.worker.services import Services

LINK_SQL = "SELECT * EXCEPT version FROM dedup_links FINAL WHERE link_id = {link_id:String}"


async def decide_link(out: Outputs, effects: Effects, decision: dict[str, Any], record: Record, dlq: str) -> None:
    """One decision (``link_id``, ``decision`` CONFIRM/REJECT, ``officer_id``, ...) checked and passed on."""
    svc = out.svc
    try:
        found = await out.io(svc.sink.query, LINK_SQL, {"link_id": decision["link_id"]})
        decided = adjudicate(_aware(found[0]) if found else None, decision,
                             svc.tok.token("officer", decision["officer_id"]))
    except InvalidMessage as err:
        await out.dead_letters(effects, [DeadLetter.from_error(source_of(record), err, record.value)], dlq,
                               datetime.now(UTC))
        return
    if decided is None:
        return  # the same decision replayed
    effects.send(BIOMETRIC_PAIRS.name, avro_bytes(LINK_COMMAND, {
        "kind": "DECIDE", "link_id": decision["link_id"], "model": "", "pair": "", "score": 0.0, "sides": [],
        "erased": False, **decided}), decision["link_id"].encode())


def _aware(link: dict[str, Any]) -> dict[str, Any]:
    for key in ("raised_at", "updated_at"):  # clickhouse-connect gives naive UTC datetimes
        link[key] = link[key].replace(tzinfo=UTC) if link[key].tzinfo is None else link[key]
    return link


class CheckedDecisions:
    """A handler of officers' decisions: each decoded with :attr:`contract`, :meth:`check` ed and :meth:`apply` ed.

    A decision that cannot be decoded or fails its check is a dead letter on :attr:`dlq` with the reason.
    """

    name: str
    contract: Contract
    dlq: str

    def __init__(self, svc: Services) -> None:
        """Check decisions with the shared services."""
        self.svc = svc
        self.io = svc.lanes(self.name)
        self.out = Outputs(svc, self.io)

    def revoked(self, partitions: set[int]) -> None:
        """Nothing is held per partition."""

    def check(self, decision: dict[str, Any]) -> None:
        """Raise :class:`InvalidMessage` if the decision's form is wrong (every decoded decision passes here)."""

    async def apply(self, effects: Effects, decision: dict[str, Any], record: Record) -> None:
        """Pass one checked decision on."""
        raise NotImplementedError

    async def process(self, records: list[Record]) -> Effects:
        """Each decision decoded, checked and passed on, or dead-lettered."""
        effects = Effects()
        await self.io(self.svc.ids.prefetch, [r.value for r in records])
        for r in records:
            try:
                decision = decode(r.value, self.contract, self.svc.ids)
                self.check(decision)
            except InvalidMessage as err:
                await self.out.dead_letters(effects, [DeadLetter.from_error(source_of(r), err, r.value)], self.dlq,
                                            datetime.now(UTC))
                continue
            await self.apply(effects, decision, r)
        return effects


class Adjudications(CheckedDecisions):
    """Decisions off biometric.adjudications, checked against their link."""

    name, contract, dlq = "adjudications", ADJUDICATION_DECISION, BIOMETRIC_ADJUDICATIONS_DLQ.name

    async def apply(self, effects: Effects, decision: dict[str, Any], record: Record) -> None:
        """To the link checks."""
        await decide_link(self.out, effects, decision, record, self.dlq)
