"""Agent ``trafficking_rules``: each key's facts through the trafficking and stay rules, alerts out for review.

Facts arrive on ``trafficking.facts`` keyed ``doc:``, ``sponsor:``, ``subject:`` or ``vessel:``,
so everything about one key reaches one partition, where its window state lives in the
``trafficking_state`` table (:func:`agents.anomaly.evaluate_batch`, the rules and the anomaly
model) and its open stays in ``stay_state`` (:func:`agents.overstay.apply_batch`). Alerts go to
the alerts topic and table and, as indicators, to their cases.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from agents.anomaly import evaluate_batch, load_model
from agents.audit import Processing
from agents.overstay import StayState, apply_batch, load_stay_rules, row_for_table
from agents.trafficking.config import load_rules
from agents.trafficking.engine import latest
from agents.trafficking.facts import Fact
from agents.trafficking.state import KeyState
from streams.worker.effects import Effects
from streams.worker.outputs import ANALYTICS_CLASSES, Outputs
from streams.worker.runtime import Record, batch_source
from streams.worker.services import Services
from streams.worker.state import ChangelogTable

log = logging.getLogger("lintas.worker")
S = TypeVar("S")


def _keyed(table: ChangelogTable[S]) -> tuple[Callable[[str], S], Callable[[str, S | None], None]]:
    """``load(key)`` and ``store(key, state)`` over a state table, for the rule engine's batch functions."""
    return (lambda key: table.get(key.encode())), (lambda key, state: table.put(key.encode(), state))  # type: ignore[return-value]


class TraffickingRules:
    """The trafficking and stay rules over their state tables."""

    name = "trafficking_rules"

    def __init__(self, svc: Services, rule_state: ChangelogTable[KeyState],
                 stay_state: ChangelogTable[StayState]) -> None:
        """Rules (and the anomaly model, if one was trained) read now, so a bad file stops the worker at start."""
        self.svc, self.rule_state, self.stay_state = svc, rule_state, stay_state
        self.io = svc.lanes(self.name)
        self.out = Outputs(svc, self.io)
        s = svc.settings
        self.rules = load_rules(s.trafficking_rules)
        self.stays = load_stay_rules(s.stay_rules)
        self.model = load_model(s.anomaly_model_path) if s.anomaly_model_path.exists() else None
        log.info("trafficking rules %s: %d rules, %d routes; anomaly model %s; stay rules %s: %d", self.rules.version,
                 len(self.rules.rules), len(self.rules.routes),
                 self.model.version if self.model else "none (run `lintas trafficking train`; rule off)",
                 self.stays.version, len(self.stays.rules))

    def revoked(self, partitions: set[int]) -> None:
        """The tables forget their own partitions."""

    async def process(self, records: list[Record]) -> Effects:
        """Apply each fact to its key's state; the alerts, stays and record of processing out."""
        effects = Effects()
        facts = [Fact.from_bytes(r.value or b"") for r in records]
        raised = evaluate_batch(facts, *_keyed(self.rule_state), self.rules, self.model)
        current = list(latest(raised).values())
        await self.out.alerts(effects, current, "trafficking")
        stays, overstays = apply_batch(facts, *_keyed(self.stay_state), self.stays, self.svc.tok.key_id)
        await self.out.alerts(effects, overstays, "overstay")
        now = datetime.now(UTC)
        effects.write("stays", [row_for_table(r, now) for r in stays])
        source, key_id = batch_source(records), self.svc.tok.key_id
        effects.record(
            Processing(component=self.name, activity="analyse", purpose="operations",
                       data_classes=ANALYTICS_CLASSES, records=len(facts), source=source,
                       destination="clickhouse:alerts", key_id=key_id,
                       detail=f"{len(current)} alert updates, rules {self.rules.version}"),
            Processing(component="overstay", activity="analyse", purpose="operations",
                       data_classes=("PSEUDONYMOUS", "QUASI_IDENTIFIER"), records=len(stays), source=source,
                       destination="clickhouse:stays", key_id=key_id,
                       detail=f"{len(overstays)} overstay alert(s), stay rules {self.stays.version}"))
        return effects
