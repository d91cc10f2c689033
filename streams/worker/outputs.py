"""What several handlers emit alike: registry-framed records, facts for the rules, alerts, dead letters.

Each adds to a batch's :class:`~streams.worker.effects.Effects`; nothing is sent here. The
registry id a record is framed with is asked on the handler's lane (registered on first use).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from agents.cases import indicator_command
from agents.dead_letters import DeadLetter, dead_letter_payload
from agents.trafficking.engine import Alert
from agents.trafficking.facts import Fact
from schemas.contracts import ALERT, DEAD_LETTER, Contract
from schemas.wire import encode_payload, frame
from streams.topics import ALERTS, CASE_COMMANDS, TRAFFICKING_FACTS
from streams.worker.effects import IO, Effects
from streams.worker.services import Services

log = logging.getLogger("lintas.worker")
# What pseudonymised rows and facts still carry: tokens, coarse codes, a minor flag, a refusal category.
ANALYTICS_CLASSES = ("CHILD", "CRIME_RECORD", "PSEUDONYMOUS", "QUASI_IDENTIFIER")


class Outputs:
    """One handler's builder of common effects, over the shared services and the handler's lane."""

    def __init__(self, svc: Services, io: IO) -> None:
        """Frame with ``svc``'s registry cache, asking it on ``io``."""
        self.svc, self.io = svc, io

    async def registered(self, effects: Effects, topic: str, contract: Contract,
                         records: list[tuple[str, dict[str, Any]]]) -> None:
        """Keyed records framed with the topic's registry id."""
        if not records:
            return
        schema_id = await self.io(self.svc.ids.id_for, topic, contract)
        for key, record in records:
            effects.send(topic, frame(schema_id, encode_payload(contract, record)), key.encode())

    @staticmethod
    def facts(effects: Effects, facts: list[Fact]) -> None:
        """Facts to trafficking.facts, keyed so each key reaches its state's partition."""
        topic = TRAFFICKING_FACTS.name
        for f in facts:
            effects.send(topic, f.to_bytes(), f.key.encode())

    async def alerts(self, effects: Effects, alerts: list[Alert], family: str) -> None:
        """Alerts to the alerts topic and table, and each to its key's case as an indicator."""
        if not alerts:
            return
        key_id = self.svc.tok.key_id
        await self.registered(effects, ALERTS.name, ALERT, [(a.alert_id, a.record(key_id, family)) for a in alerts])
        now = datetime.now(UTC)
        rows = [a.row(key_id, now, family) for a in alerts]
        effects.write("alerts", rows)
        for case, command in map(indicator_command, rows):  # the case agent combines them
            effects.send(CASE_COMMANDS.name, command, case.encode())
        log.info("%d %s alert update(s): %s", len(alerts), family, ", ".join(sorted({a.rule_id for a in alerts})))

    async def dead_letters(self, effects: Effects, letters: list[DeadLetter], dlq: str, now: datetime) -> None:
        """Dead letters to their topic (whole, with the reason) and to ClickHouse (the reason only)."""
        if not letters:
            return
        dlq_id = await self.io(self.svc.ids.id_for, dlq, DEAD_LETTER)
        for letter in letters:
            effects.send(dlq, frame(dlq_id, dead_letter_payload(letter, now)), headers=letter.headers())
        effects.write("dead_letters", [letter.row(now) for letter in letters])
        log.info("%d dead letter(s) to %s: %s", len(letters), dlq,
                 ", ".join(sorted({letter.error_code for letter in letters})))
