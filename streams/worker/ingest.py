"""Agents ``ingest_crossings`` and ``ingest_landings``: an input topic's events to rows, captures, facts and checks.

Each event's post signature is checked, then it is decoded, validated and pseudonymised
(:func:`agents.ingest.ingest`): the analytics row for ClickHouse, the identities for the vault
and the captures for the gallery (both sealed per person), the facts for the rules, and the
document to check against this worker's watchlists. A bad event is a dead letter with the
reason; nothing else of the batch is lost.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from agents.audit import Processing, classes_of
from agents.biometric import capture_commands
from agents.dead_letters import DeadLetter
from agents.ingest import Accepted, EventKind, ingest
from agents.posts import PostRegistry
from agents.sealing import person_key
from agents.signing import verify
from agents.vault import VAULT_CLASSES, sealed_entries
from agents.watchlist import LIST_CLASSES, Presented, check
from schemas.errors import InvalidMessage
from streams.topics import BIOMETRIC_PROBES, DEDUP_SHARDS, IDENTITY_VAULT, TRAFFICKING_FACTS
from streams.worker.effects import Effects
from streams.worker.outputs import ANALYTICS_CLASSES, Outputs
from streams.worker.runtime import Record, batch_source, source_of
from streams.worker.services import Services


class Ingest:
    """One input topic's handler (crossings or landings)."""

    def __init__(self, svc: Services, kind: EventKind, dlq: str) -> None:
        """Ingest ``kind`` events; their dead letters go to topic ``dlq``."""
        self.svc, self.kind, self.dlq = svc, kind, dlq
        self.name = f"ingest_{kind.table}"
        self.io = svc.lanes(self.name)
        self.out = Outputs(svc, self.io)

    def revoked(self, partitions: set[int]) -> None:
        """Nothing is held per input partition."""

    async def process(self, records: list[Record]) -> Effects:
        """One batch: rows, dead letters, vault, captures, facts, watchlist alerts and the record of processing."""
        self.svc.refresh_keys()
        effects = Effects()
        await self.io(self.svc.ids.prefetch, [r.value for r in records])  # the registry asked once, off the loop
        now, posts = datetime.now(UTC), self.svc.posts()
        results = [self._one(r, now, posts) for r in records]
        accepted = [r for r in results if isinstance(r, Accepted)]
        letters = [r for r in results if isinstance(r, DeadLetter)] + [x for a in accepted for x in a.letters]
        rows = [a.row for a in accepted]
        ingested = datetime.now(UTC)
        for row in rows:
            row["ingested_at"] = ingested
        effects.write(self.kind.table, rows)
        await self.out.dead_letters(effects, letters, self.dlq, now)
        vaulted, probes = self._to_operations(effects, accepted)
        presented = [a.presented for a in accepted if a.presented is not None]
        hits = await self._checked(effects, presented)
        effects.record(*self._processing(records, rows=len(rows), probes=probes, vaulted=vaulted,
                                         facts=len(accepted), letters=letters, checked=len(presented),
                                         hits=len(hits)))
        return effects

    def _one(self, record: Record, now: datetime, posts: PostRegistry) -> Accepted | DeadLetter:
        try:
            signer = verify(record.headers, record.value, self.svc.post_keys)
        except InvalidMessage as err:  # unsigned or forged: never decoded
            return DeadLetter.from_error(source_of(record), err, record.value)
        return ingest(record.value, source_of(record), self.kind, self.svc.ids, self.svc.keys, now,
                      self.svc.templates, signed_by=signer, posts=posts)

    def _to_operations(self, effects: Effects, accepted: list[Accepted]) -> tuple[int, int]:
        """Identities to the vault and captures to the gallery (both sealed per person), facts to the rules."""
        people = {token: identity for a in accepted for token, identity in a.people.items()}
        keyed = {name.partition(":")[2] for name in self.svc.sealer.store.keys([person_key(t) for t in people])}
        vault = sealed_entries(self.svc.vaulted.fresh(people, keyed), self.svc.sealer)  # creates new persons' keys
        probes = capture_commands([p for a in accepted for p in a.probes], self.svc.sealer, DEDUP_SHARDS)
        for token, value in vault:
            effects.send(IDENTITY_VAULT.name, value, token.encode())
        for partition, value in probes:
            effects.send(BIOMETRIC_PROBES.name, value, partition=partition)
        self.out.facts(effects, [f for a in accepted for f in a.facts])
        return len(vault), len(probes)

    async def _checked(self, effects: Effects, presented: list[Presented]) -> list[Any]:
        """Documents against this worker's watchlists (read to their end first: no check against half a list)."""
        if not presented:
            return []
        lists = self.svc.watchlists
        lists.start()
        while not lists.ready.is_set():  # the reader warns while a list is not read to its end
            await asyncio.sleep(0.05)
        hits = check(presented, lists.lookup)
        await self.out.alerts(effects, hits, "watchlist")
        return hits

    def _processing(self, records: list[Record], *, rows: int, probes: int, vaulted: int, facts: int,
                    letters: list[DeadLetter], checked: int, hits: int) -> list[Processing]:
        """The batch's record of processing: one entry per destination."""
        source, table = batch_source(records), self.kind.table
        inputs, ops, analytics = classes_of(self.kind.contract), self.svc.keys.operations, self.svc.keys.analytics
        lists = ", ".join(f"{name} {n}" for name, n in self.svc.watchlists.sizes().items())

        def entry(activity: str, purpose: str, classes: tuple[str, ...], records: int, destination: str, *,
                  key_id: str = "", outcome: str = "ok", detail: str = "", by: str = self.name) -> Processing:
            return Processing(component=by, activity=activity, purpose=purpose, data_classes=classes,
                              records=records, source=source, destination=destination, key_id=key_id,
                              outcome=outcome, detail=detail)

        return [
            entry("store", "analytics", ANALYTICS_CLASSES, rows, f"clickhouse:{table}", key_id=analytics.key_id),
            entry("analyse", "operations", inputs, probes, BIOMETRIC_PROBES.name, key_id=ops.key_id,
                  detail="biometric captures, sealed per person"),
            entry("store", "operations", VAULT_CLASSES, vaulted, IDENTITY_VAULT.name, key_id=ops.key_id,
                  detail="identities, sealed per person"),
            entry("analyse", "operations", ANALYTICS_CLASSES, facts, TRAFFICKING_FACTS.name, key_id=ops.key_id),
            entry("store", "operations", inputs, len(letters), self.dlq, outcome="dead_letter",
                  detail=",".join(sorted({x.error_code for x in letters}))),
            entry("analyse", "operations", LIST_CLASSES, checked, "clickhouse:alerts", key_id=ops.key_id,
                  by="watchlist_check", detail=f"{hits} alert(s); lists {lists}"),
        ]
