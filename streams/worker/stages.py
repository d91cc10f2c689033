"""Every agent of the worker, declared once: its name, the topic it reads, its batch size, handler and tables.

One name per stage: the agent id is the consumer group's suffix (``lintas-pipeline-<name>``),
the handler's module (``streams/worker/<name>.py``, both ingest agents in ``ingest.py``) and
the component in its record of processing. :func:`assemble` builds every handler and state
table over the services, a sender per agent and a reader of compacted partitions: the worker's
(:mod:`streams.worker.app`) or a test's (:mod:`streams.worker.testing`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from agents.cases import CaseState
from agents.ingest import CROSSINGS, LANDINGS
from agents.links import LinkState
from agents.overstay import StayState
from agents.trafficking.state import KeyState
from streams.settings import Settings
from streams.topics import (
    AGENTS,
    BIOMETRIC_ADJUDICATIONS,
    CASE_STATE_TABLE,
    CROSSING_EVENTS_DLQ,
    LANDING_EVENTS_DLQ,
    LINK_STATE_TABLE,
    REVIEW_DECISIONS,
    STAY_STATE_TABLE,
    TRAFFICKING_STATE_TABLE,
    TopicSpec,
    changelog_of,
)
from streams.worker.adjudications import Adjudications
from streams.worker.cases import Cases
from streams.worker.dedup_links import DedupLinks
from streams.worker.dedup_shards import DedupShards
from streams.worker.effects import Sender, perform
from streams.worker.ingest import Ingest
from streams.worker.refusals import Refusals
from streams.worker.review_decisions import ReviewDecisions
from streams.worker.runtime import BatchHandler, Record
from streams.worker.services import Services
from streams.worker.state import ChangelogTable, Reader
from streams.worker.trafficking_rules import TraffickingRules

Tables = dict[str, ChangelogTable[Any]]
Build = Callable[[Services, Tables, Reader], BatchHandler]


def _one(settings: Settings) -> int:
    return 1


@dataclass(frozen=True)
class Stage:
    """One agent: a batch agent on its own consumer, or (``batch`` false) a Faust agent taking a record at a time."""

    name: str
    topic: TopicSpec
    build: Build
    size: Callable[[Settings], int] = _one
    tables: tuple[str, ...] = ()
    batch: bool = True


STAGES: tuple[Stage, ...] = (
    # crossing events → pseudonymised rows (or dead letters), captures, facts, watchlist checks
    Stage("ingest_crossings", AGENTS["ingest_crossings"], lambda svc, t, r: Ingest(svc, CROSSINGS,
                                                                                   CROSSING_EVENTS_DLQ.name),
          lambda s: s.sink_batch_size),
    # landing events → rows (or dead letters), facts
    Stage("ingest_landings", AGENTS["ingest_landings"], lambda svc, t, r: Ingest(svc, LANDINGS,
                                                                                 LANDING_EVENTS_DLQ.name),
          lambda s: s.sink_batch_size),
    # captures through the gallery shards this worker owns: verify, search, keep pairs, decide
    Stage("dedup_shards", AGENTS["dedup_shards"], lambda svc, t, read: DedupShards(svc, read),
          lambda s: s.dedup_batch_size),
    # link evidence and officers' checked decisions → each link's state → biometric.links and dedup_links
    Stage("dedup_links", AGENTS["dedup_links"], lambda svc, t, r: DedupLinks(svc, t[LINK_STATE_TABLE]),
          lambda s: s.dedup_batch_size, (LINK_STATE_TABLE,)),
    # facts → per-key rule and stay state → alerts for officers' review (alerts topic and table)
    Stage("trafficking_rules", AGENTS["trafficking_rules"],
          lambda svc, t, r: TraffickingRules(svc, t[TRAFFICKING_STATE_TABLE], t[STAY_STATE_TABLE]),
          lambda s: s.trafficking_batch_size, (TRAFFICKING_STATE_TABLE, STAY_STATE_TABLE)),
    # indicators and checked decisions → each case's state → the cases table
    Stage("cases", AGENTS["cases"], lambda svc, t, r: Cases(svc, t[CASE_STATE_TABLE]),
          lambda s: s.trafficking_batch_size, (CASE_STATE_TABLE,)),
    # lines refused at a post (on the inputs' dead-letter topics) → dead_letters rows
    Stage("refusals_crossings", AGENTS["refusals_crossings"],
          lambda svc, t, r: Refusals(svc, "refusals_crossings", AGENTS["refusals_crossings"]),
          lambda s: s.sink_batch_size),
    Stage("refusals_landings", AGENTS["refusals_landings"],
          lambda svc, t, r: Refusals(svc, "refusals_landings", AGENTS["refusals_landings"]),
          lambda s: s.sink_batch_size),
    # officers' decisions on links → checked against the link → the link agent (biometric.pairs)
    Stage("adjudications", BIOMETRIC_ADJUDICATIONS, lambda svc, t, r: Adjudications(svc), batch=False),
    # officers' decisions → form checked → the case agent (review.cases) or the link checks
    Stage("review_decisions", REVIEW_DECISIONS, lambda svc, t, r: ReviewDecisions(svc), batch=False),
)
BATCH_STAGES = tuple(s for s in STAGES if s.batch)
# Each table's state type; its changelog (streams.topics.CHANGELOGS) is partitioned like its agent's topic.
TABLE_TYPES: dict[str, Any] = {
    TRAFFICKING_STATE_TABLE: KeyState,
    STAY_STATE_TABLE: StayState,
    LINK_STATE_TABLE: LinkState,
    CASE_STATE_TABLE: CaseState,
}


@dataclass
class Pipeline:
    """Every agent's handler, sender and tables over the shared services, built once when the worker starts."""

    services: Services
    senders: dict[str, Sender]
    tables: Tables
    handlers: dict[str, BatchHandler]

    def tables_of(self, stage: Stage) -> list[ChangelogTable[Any]]:
        """The state tables ``stage`` keeps."""
        return [self.tables[name] for name in stage.tables]

    async def handle(self, stage: Stage, records: list[Record]) -> None:
        """One batch of ``stage``'s records through its handler, its effects made to hold (the caller commits)."""
        effects = await self.handlers[stage.name].process(records)
        svc = self.services
        await perform(effects, self.senders[stage.name], svc.lanes(stage.name), svc.sink.write, self.tables_of(stage))


def stage(name: str) -> Stage:
    """The stage of that name."""
    return next(s for s in STAGES if s.name == name)


def assemble(svc: Services, sender: Callable[[str], Sender], read: Reader,
             stages: Sequence[Stage] = STAGES) -> Pipeline:
    """Handlers and tables over ``svc``: rules, stay rules, model, policy and thresholds are read here."""
    owner = {table: s.name for s in stages for table in s.tables}
    tables: Tables = {
        name: ChangelogTable(name, changelog_of(name).name, changelog_of(name).partitions, kind.from_bytes,
                             lambda state: state.to_bytes(), sender(owner[name]).send, read)
        for name, kind in TABLE_TYPES.items() if name in owner}
    return Pipeline(svc, {s.name: sender(s.name) for s in stages}, tables,
                    {s.name: s.build(svc, tables, read) for s in stages})
