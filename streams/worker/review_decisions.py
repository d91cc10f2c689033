"""Agent ``review_decisions``: officers' decisions off ``review.decisions``, their form checked, passed on.

Case decisions go to their case on ``review.cases`` (the officer's account tokenised), where the
case agent applies them; link decisions go through the link checks of
:mod:`streams.worker.adjudications`. A decision whose form is wrong (a link action on a case, a
dismissal without a reason) is a dead letter with the reason.
"""

from __future__ import annotations

from datetime import UTC, datetime

from agents.cases import LINK_ACTIONS, check_form, decision_command
from agents.ingest import DeadLetter
from schemas.contracts import REVIEW_DECISION
from schemas.errors import InvalidMessage
from schemas.wire import decode
from streams.topics import CASE_COMMANDS, REVIEW_DECISIONS_DLQ
from streams.worker.adjudications import decide_link
from streams.worker.effects import Effects
from streams.worker.outputs import Outputs
from streams.worker.runtime import Record, source_of
from streams.worker.services import Services


class ReviewDecisions:
    """Decisions off review.decisions."""

    name = "review_decisions"

    def __init__(self, svc: Services) -> None:
        """Check decisions with the shared services."""
        self.svc = svc
        self.io = svc.lanes(self.name)
        self.out = Outputs(svc, self.io)

    def revoked(self, partitions: set[int]) -> None:
        """Nothing is held per partition."""

    async def process(self, records: list[Record]) -> Effects:
        """Each decision's form checked, then passed to its case or link, or dead-lettered."""
        effects = Effects()
        await self.io(self.svc.ids.prefetch, [r.value for r in records])
        for r in records:
            try:
                decision = decode(r.value, REVIEW_DECISION, self.svc.ids)
                check_form(decision["action"], decision["reason_code"], decision["pathway"])
                if (decision["target_kind"] == "LINK") != (decision["action"] in LINK_ACTIONS):
                    raise InvalidMessage("wrong_target", "action", f"{decision['action']} is not an action on a "
                                         f"{decision['target_kind'].lower()}")
            except InvalidMessage as err:
                await self.out.dead_letters(effects, [DeadLetter.from_error(source_of(r), err, r.value)],
                                            REVIEW_DECISIONS_DLQ.name, datetime.now(UTC))
                continue
            if decision["target_kind"] == "LINK":
                await decide_link(self.out, effects, {
                    "decision_id": decision["decision_id"], "link_id": decision["target_id"],
                    "decision": LINK_ACTIONS[decision["action"]], "officer_id": decision["officer_id"],
                    "decided_at": decision["decided_at"]}, r, REVIEW_DECISIONS_DLQ.name)
                continue
            officer = self.svc.tok.token("officer", decision["officer_id"])
            effects.send(CASE_COMMANDS.name, decision_command(decision, officer), decision["target_id"].encode())
        return effects
