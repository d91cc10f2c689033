"""Agent ``dedup_links``: link evidence and officers' checked decisions to each link's state, and on to officers.

Every pair of samples of two identities that scored at or above the pair floor, and every
officer's checked decision, arrives on ``biometric.pairs`` keyed by link id. Each link's pairs
and decision live in the ``dedup_link_state`` table (:func:`agents.links.apply_command`); what
changed goes to ``biometric.links`` (compacted), ``dedup_links`` and, as subject facts, to the
trafficking rules. A link's colour and score are a function of the pairs it holds, not of
their order.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from agents.audit import Processing
from agents.biometric import LINK_COMMAND, read
from agents.links import LinkState, apply_command, link_row
from agents.trafficking.facts import link_facts
from schemas.contracts import IDENTITY_LINK
from streams.topics import BIOMETRIC_LINKS
from streams.worker.effects import Effects
from streams.worker.outputs import Outputs
from streams.worker.runtime import Record, batch_source
from streams.worker.services import Services
from streams.worker.state import ChangelogTable

log = logging.getLogger("lintas.worker")


class DedupLinks:
    """Each link's state in its table; colours from the thresholds in force now."""

    name = "dedup_links"

    def __init__(self, svc: Services, table: ChangelogTable[LinkState]) -> None:
        """Links kept in ``table``."""
        self.svc, self.table = svc, table
        self.io = svc.lanes(self.name)
        self.out = Outputs(svc, self.io)

    def revoked(self, partitions: set[int]) -> None:
        """The table forgets its own partitions."""

    async def process(self, records: list[Record]) -> Effects:
        """Apply each command to its link's state; what changed goes out."""
        now, table, effects = datetime.now(UTC), self.table, Effects()
        links: dict[str, dict[str, Any]] = {}
        tombstones: set[str] = set()
        facts: list[dict[str, Any]] = []
        thresholds = self.svc.thresholds.current()
        for r in records:
            key = r.key or b""
            out = apply_command(table.get(key), read(LINK_COMMAND, r.value or b""), thresholds.for_model, now,
                                self.svc.settings.dedup_auto_confirm_red, self.svc.tok.key_id)
            if out.state is not None or key in table:
                table.put(key, out.state)
            link = key.decode()
            if out.tombstone:
                tombstones.add(link)
                links.pop(link, None)
            if out.record is not None:
                links[link] = out.record
                tombstones.discard(link)
            facts += out.facts
        await self.out.registered(effects, BIOMETRIC_LINKS.name, IDENTITY_LINK, sorted(links.items()))
        for link in sorted(tombstones):
            effects.send(BIOMETRIC_LINKS.name, None, link.encode())
        self.out.facts(effects, link_facts(facts))
        effects.write("dedup_links", [link_row(r) for r in links.values()])
        if links:
            log.info("%d link update(s): %s", len(links),
                     ", ".join(sorted({f"{r['colour']} {r['status']}" for r in links.values()})))
        effects.record(Processing(
            component=self.name, activity="analyse", purpose="operations", data_classes=("PSEUDONYMOUS",),
            records=len(records), source=batch_source(records), destination="clickhouse:dedup_links",
            key_id=self.svc.tok.key_id,
            detail=f"{len(links)} link update(s), {len(tombstones)} erased, {len(facts)} subject fact(s)"))
        return effects
