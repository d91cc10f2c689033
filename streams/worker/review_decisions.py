"""Agent ``review_decisions``: officers' decisions off ``review.decisions``, their form checked, passed on.

Case decisions go to their case on ``review.cases`` (the officer's account tokenised), where the
case agent applies them; link decisions go through the link checks of
:mod:`streams.worker.adjudications`. A decision whose form is wrong (a link action on a case, a
dismissal without a reason) is a dead letter with the reason.
"""

from __future__ import annotations

from typing import Any

from agents.cases import LINK_ACTIONS, check_form, decision_command
from schemas.contracts import REVIEW_DECISION
from schemas.errors import InvalidMessage
from streams.topics import CASE_COMMANDS, REVIEW_DECISIONS_DLQ
from streams.worker.adjudications import CheckedDecisions, decide_link
from streams.worker.effects import Effects
from streams.worker.runtime import Record


class ReviewDecisions(CheckedDecisions):
    """Decisions off review.decisions."""

    name, contract, dlq = "review_decisions", REVIEW_DECISION, REVIEW_DECISIONS_DLQ.name

    def check(self, decision: dict[str, Any]) -> None:
        """The form: reason and pathway as the action needs them, and an action on the kind of target named."""
        check_form(decision["action"], decision["reason_code"], decision["pathway"])
        if (decision["target_kind"] == "LINK") != (decision["action"] in LINK_ACTIONS):
            raise InvalidMessage("wrong_target", "action", f"{decision['action']} is not an action on a "
                                 f"{decision['target_kind'].lower()}")

    async def apply(self, effects: Effects, decision: dict[str, Any], record: Record) -> None:
        """A link decision to the link checks; a case decision to its case, the officer's account tokenised."""
        if decision["target_kind"] == "LINK":
            await decide_link(self.out, effects, {
                "decision_id": decision["decision_id"], "link_id": decision["target_id"],
                "decision": LINK_ACTIONS[decision["action"]], "officer_id": decision["officer_id"],
                "decided_at": decision["decided_at"]}, record, self.dlq)
            return
        officer = self.svc.tok.token("officer", decision["officer_id"])
        effects.send(CASE_COMMANDS.name, decision_command(decision, officer), decision["target_id"].encode())
