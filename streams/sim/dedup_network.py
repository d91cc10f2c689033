"""The dedup agents' pure steps over in-memory partitions: what the stream computes, without a broker.

:class:`LocalNetwork` holds ``biometric.probes``, ``biometric.gallery`` and
``biometric.pairs`` as lists and runs :func:`agents.biometric.shard_step` and
:func:`agents.links.apply_command` over them in whatever order it is told: partitions in
turn or at random, batches of any size, a shard that crashes between its sends and
its records and is read back from its gallery partition. The accuracy benchmark
runs the real decision code through it, and the tests check that every schedule
gives the same decisions and links.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from agents.biometric import (
    LINK_COMMAND,
    Capture,
    DedupConfig,
    capture_commands,
    shard_of,
    shard_step,
)
from agents.dedup import IdentityState, Seen
from agents.links import STATUS_RANK, LinkState, apply_command
from agents.shard import Shard, load_records, read

LINK_PARTITIONS = 4


@dataclass
class LocalNetwork:
    """In-memory topics and the agents that consume them (one consumer position per partition)."""

    cfg: DedupConfig
    auto_confirm_red: bool = False
    probes: list[list[bytes]] = field(default_factory=list)
    gallery: list[list[tuple[bytes | None, bytes | None]]] = field(default_factory=list)
    pairs: list[list[tuple[str, bytes]]] = field(default_factory=list)
    position: list[int] = field(default_factory=list)
    link_position: list[int] = field(default_factory=list)
    shards: dict[int, Shard] = field(default_factory=dict)
    links: dict[str, LinkState] = field(default_factory=dict)
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)
    link_records: dict[str, dict[str, Any]] = field(default_factory=dict)
    facts: list[dict[str, Any]] = field(default_factory=list)
    searches: list[dict[str, Any]] = field(default_factory=list)
    emitted: list[dict[str, Any]] = field(default_factory=list)  # every decision row and link fact, as sent
    clock: datetime = datetime(2026, 12, 1, tzinfo=UTC)
    steps: int = 0

    def __post_init__(self) -> None:
        """Empty partitions."""
        n = self.cfg.shards
        self.probes = [[] for _ in range(n)]
        self.gallery = [[] for _ in range(n)]
        self.pairs = [[] for _ in range(LINK_PARTITIONS)]
        self.position = [0] * n
        self.link_position = [0] * LINK_PARTITIONS

    def send(self, probes: Sequence[tuple[Capture, np.ndarray]]) -> None:
        """What ingest sends for these captures."""
        for partition, value in capture_commands(probes, self.cfg.sealer, self.cfg.shards):
            self.probes[partition].append(value)

    def _tick(self) -> datetime:
        self.clock += timedelta(milliseconds=10)
        return self.clock

    def shard(self, number: int) -> Shard:
        """A shard, read back from its gallery partition if it is not in memory."""
        if number not in self.shards:
            shard = self.cfg.shard(number)
            load_records(shard, self.gallery[number], self.cfg)
            self.shards[number] = shard
        return self.shards[number]

    def states(self) -> list[IdentityState]:
        """Every identity the shards in memory hold, decoded."""
        return [st for shard in self.shards.values() for st in shard.each(self.cfg)]

    def samples(self) -> dict[str, dict[tuple[str, str], Seen]]:
        """Every identity's current samples, by identity key."""
        return {st.key: st.samples(self.cfg.thresholds.for_model(st.model), self.cfg.namer(st))
                for st in self.states()}

    def step_shard(self, number: int, batch: int, crash: str | None = None) -> bool:
        """Consume up to ``batch`` messages of one probes partition; False if nothing was waiting.

        ``crash='after_sends'``: the worker dies after its sends, before its records;
        ``'after_records'``: after its records, before its commit. Either way the shard is lost
        from memory and the messages are read again.
        """
        start = self.position[number]
        messages = [(start + i, v) for i, v in enumerate(self.probes[number][start:start + batch])]
        if not messages:
            return False
        out = shard_step(self.shard(number), messages, self.cfg, self._tick())
        for partition, value in out.commands:
            self.probes[partition].append(value)
        for key, value in out.links:
            self.pairs[shard_of(key, LINK_PARTITIONS)].append((key, value))
        self.emitted += out.decisions
        for row in out.decisions:
            held = self.decisions.get(row["probe_id"])
            if held is None or row["revision"] >= held["revision"]:
                self.decisions[row["probe_id"]] = row
        self.searches += out.searches
        if crash == "after_sends":
            del self.shards[number]
            return True
        self.gallery[number] += [(k.encode(), v) for k, v in out.records]
        if crash == "after_records":
            del self.shards[number]
            return True
        self.position[number] = start + len(messages)
        return True

    def step_links(self, partition: int, batch: int) -> bool:
        """Consume up to ``batch`` link commands of one partition; False if nothing was waiting."""
        start = self.link_position[partition]
        todo = self.pairs[partition][start:start + batch]
        if not todo:
            return False
        now = self._tick()
        for key, value in todo:
            out = apply_command(self.links.get(key), read(LINK_COMMAND, value), self.cfg.thresholds.for_model, now,
                        self.auto_confirm_red, self.cfg.tok.key_id)
            if out.state is None:
                self.links.pop(key, None)
            else:
                self.links[key] = LinkState(**json.loads(out.state.to_bytes()))  # as the changelog keeps it
            if out.tombstone:
                self.link_records.pop(key, None)
            if out.record is not None:
                held = self.link_records.get(key)
                rank = STATUS_RANK[out.record["status"]]
                if held is None or rank >= STATUS_RANK[held["status"]]:
                    self.link_records[key] = out.record
            self.facts += out.facts
            self.emitted += [{"link_fact": f} for f in out.facts]
        self.link_position[partition] = start + len(todo)
        return True

    def pending(self) -> bool:
        """Something is waiting in a partition."""
        return any(self.position[p] < len(self.probes[p]) for p in range(self.cfg.shards)) or any(
            self.link_position[p] < len(self.pairs[p]) for p in range(LINK_PARTITIONS))

    def run(self, rng: random.Random | None = None, batch: tuple[int, int] = (500, 500),
            crash_rate: float = 0.0) -> None:
        """Consume until every partition is drained; with ``rng``, partitions and batch sizes at random."""
        while self.pending():
            self.steps += 1
            order = list(range(self.cfg.shards))
            if rng:
                rng.shuffle(order)
            for number in order:
                size = rng.randint(*batch) if rng else batch[0]
                crash = None
                if rng and crash_rate and rng.random() < crash_rate:
                    crash = rng.choice(["after_sends", "after_records"])
                self.step_shard(number, size, crash)
                if rng and rng.random() < 0.5:
                    break  # let other partitions run ahead
            for partition in range(LINK_PARTITIONS):
                self.step_links(partition, rng.randint(*batch) if rng else batch[0])

    def restart(self) -> None:
        """Every shard lost from memory (a worker restart): they are read back on their next batch."""
        self.shards.clear()

    def outcomes(self) -> dict[str, tuple[str, str]]:
        """Probe id → (outcome, subject) of the latest decision."""
        return {p: (r["outcome"], r["subject_id"]) for p, r in self.decisions.items()}

    def link_set(self) -> dict[str, tuple[Any, ...]]:
        """Live link id → what an officer sees of it (subjects, identities, colour, status, score, distinct pairs).

        A WITHDRAWN link (its evidence fell away before anyone decided) is history, not a link: which
        proposals came and went depends on the order things arrived in.
        """
        return {k: (r["subject_id"], r["linked_subject_id"], r["identity_token"], r["subject_identity_token"],
                    r["colour"], r["status"], r["score"], r["pair_count"], r["probe_id"])
                for k, r in self.link_records.items() if r["status"] != "WITHDRAWN"}
