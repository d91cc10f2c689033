"""Agent ``cases``: indicators and officers' checked decisions to each case's state, its row to ``cases``.

Every alert reaches its key's case on ``review.cases`` as an indicator; the case agent combines
them under the review policy (:mod:`agents.cases`), applies checked decisions (the first of a
decision id stands; a transition the case does not allow is a dead letter with the reason) and
forgets an erased person. Each case lives in the ``case_state`` table, so the order of what
reaches one case is its partition's.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from agents.audit import Processing
from agents.cases import CaseState, add_indicator, case_row, decide, forget, load_policy, read_command
from agents.dead_letters import DeadLetter
from schemas.errors import InvalidMessage
from streams.topics import REVIEW_DECISIONS_DLQ
from streams.worker.effects import Effects
from streams.worker.outputs import Outputs
from streams.worker.runtime import Record, batch_source, source_of
from streams.worker.services import Services
from streams.worker.state import ChangelogTable

log = logging.getLogger("lintas.worker")


def _decision_row(held: dict[str, Any]) -> dict[str, Any]:
    return {**held, "decided_at": datetime.fromtimestamp(held["decided_at"] / 1000, tz=UTC),
            "applied_at": datetime.fromtimestamp(held["applied_at"] / 1000, tz=UTC)}


class Cases:
    """Each case's indicators and decisions in its table."""

    name = "cases"

    def __init__(self, svc: Services, table: ChangelogTable[CaseState]) -> None:
        """The review policy is read now, so a bad file stops the worker at start."""
        self.svc, self.table = svc, table
        self.io = svc.lanes(self.name)
        self.out = Outputs(svc, self.io)
        self.policy = load_policy(svc.settings.review_policy)
        log.info("review policy %s: threshold %g (%s)", self.policy.version, self.policy.threshold,
                 self.policy.calibrated_on)

    def revoked(self, partitions: set[int]) -> None:
        """The table forgets its own partitions."""

    async def process(self, records: list[Record]) -> Effects:
        """Apply each command to its case; the case rows, decision rows and refusals out."""
        now, key_id, table, effects = datetime.now(UTC), self.svc.tok.key_id, self.table, Effects()
        rows: dict[str, dict[str, Any]] = {}
        decided: dict[str, dict[str, Any]] = {}
        letters: list[DeadLetter] = []
        for r in records:
            key = r.key or b""
            cmd = read_command(r.value or b"")
            state = table.get(key) or CaseState()
            if cmd["kind"] == "INDICATOR":
                add_indicator(state, cmd["indicator"], cmd["key"], self.policy)
            elif cmd["kind"] == "ERASE":  # lintas erase: ClickHouse's rows were already deleted or blanked
                if (kept := forget(state, cmd["tokens"])) is None:
                    if key in table:
                        table.put(key, None)
                    rows.pop(key.decode(), None)
                    continue
                state = kept
            else:
                try:
                    row = decide(state, cmd["decision"], self.policy, key_id, now)
                except InvalidMessage as err:
                    letters.append(DeadLetter.from_error(source_of(r), err, r.value))
                    continue
                if row is None:  # a replay: its row again (it may not have reached ClickHouse)
                    row = _decision_row(state.decisions[cmd["decision"]["decision_id"]])
                decided[row["decision_id"]] = row
            if state.key:
                table.put(key, state)
            if (case := case_row(state, self.policy, key_id, now)) is not None:
                rows[case["case_id"]] = case
        effects.write("cases", list(rows.values()))
        effects.write("case_decisions", list(decided.values()))
        await self.out.dead_letters(effects, letters, REVIEW_DECISIONS_DLQ.name, now)
        if decided:
            log.info("%d review decision(s) applied: %s", len(decided),
                     ", ".join(sorted({d["status_after"] for d in decided.values()})))
        effects.record(Processing(
            component=self.name, activity="analyse", purpose="operations", data_classes=("PSEUDONYMOUS",),
            records=len(records), source=batch_source(records), destination="clickhouse:cases", key_id=key_id,
            detail=f"{len(rows)} case update(s), {len(decided)} decision(s), {len(letters)} refused, "
                   f"policy {self.policy.version}"))
        return effects
