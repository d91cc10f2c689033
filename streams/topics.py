"""Every Kafka topic of Lintas, declared once.

The local stack creates these (``lintas stack up``), the Faust app declares its
topics from them, and ops read them here. Nothing else names a topic by string.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agents.privacy import policy


@dataclass(frozen=True)
class TopicSpec:
    """One topic: name, partitions, retention class (from the privacy policy) and cleanup policy.

    ``restricted`` topics carry personal data in clear (what posts send, and its
    dead letters): only the ingest agents and ops read them. Everything else holds
    tokens, codes, counts or sealed bytes only; a test scans them for clear values.
    """

    name: str
    partitions: int
    retention: str
    cleanup_policy: str = "delete"
    doc: str = ""
    internal: bool = False  # written only by Lintas' own agents: no outside input, so no dead-letter topic
    restricted: bool = False
    extra_config: dict[str, str] = field(default_factory=dict)

    @property
    def retention_ms(self) -> int:
        """``retention.ms`` of the topic's retention class (-1: kept until erased)."""
        return policy().retention[self.retention].ms

    @property
    def cleanup(self) -> str:
        """Compacted topics with a finite retention class also delete what is older than it."""
        if self.cleanup_policy == "compact" and self.retention_ms > 0:
            return "compact,delete"
        return self.cleanup_policy

    @property
    def dlq(self) -> str:
        """Name of this topic's dead-letter topic."""
        return f"{self.name}.dlq"

    def config(self) -> dict[str, str]:
        """Topic-level Kafka config."""
        return {
            "cleanup.policy": self.cleanup,
            "retention.ms": str(self.retention_ms),
            **self.extra_config,
        }


# Raw border-post input carries personal data: short retention, restricted access.
CROSSING_EVENTS = TopicSpec(
    "crossing_events", partitions=6, retention="personal_clear", restricted=True,
    doc="Crossing events from border posts (Avro, contains personal data).",
)
LANDING_EVENTS = TopicSpec(
    "landing_events", partitions=3, retention="personal_clear", restricted=True,
    doc="Maritime landing events (Avro, contains personal data).",
)
# Dead letters keep the raw bytes for repair, so they share the source's retention.
CROSSING_EVENTS_DLQ = TopicSpec(
    CROSSING_EVENTS.dlq, partitions=1, retention="personal_clear", restricted=True,
    doc="Crossing events that failed decoding or validation, with the reason.",
)
LANDING_EVENTS_DLQ = TopicSpec(
    LANDING_EVENTS.dlq, partitions=1, retention="personal_clear", restricted=True,
    doc="Landing events that failed decoding or validation, with the reason.",
)


# Biometric deduplication. The gallery is split into shards, one per partition of
# biometric.probes and biometric.gallery (co-partitioned: equal counts, so the
# worker that owns probes partition s owns gallery shard s). An identity (model and
# document or name token) lives in one shard, chosen by hash. Changing the shard
# count re-partitions the gallery: a migration, not a setting.
DEDUP_SHARDS = 4
BIOMETRIC_PROBES = TopicSpec(
    "biometric.probes", partitions=DEDUP_SHARDS, retention="operational",
    doc="Commands to the gallery shards: captures to verify at their identity's shard, new samples to search "
        "1:N in every other shard, withdrawn samples, erasures (sealed templates, pseudonymous ids); internal.",
    internal=True,
)
BIOMETRIC_GALLERY = TopicSpec(
    "biometric.gallery", partitions=DEDUP_SHARDS, retention="personal_sealed", cleanup_policy="compact",
    doc="The gallery: one record per identity (its subjects, recent captures and samples, sealed; the link "
        "evidence found against them); compacted, internal.",
    extra_config={"min.cleanable.dirty.ratio": "0.1"},
    internal=True,
)
# Link evidence, keyed by link id (one pair of subjects), for the link agent's state table.
BIOMETRIC_PAIRS = TopicSpec(
    "biometric.pairs", partitions=4, retention="operational",
    doc="Pairs of samples of two subjects found by the gallery shards (and withdrawn), and officers' checked "
        "decisions, keyed by link id; pseudonymous, internal.",
    internal=True,
)
LINK_STATE_TABLE = "dedup_link_state"  # Faust table of each link's pairs and decision (agents/links.py)
BIOMETRIC_LINKS = TopicSpec(
    "biometric.links", partitions=3, retention="case", cleanup_policy="compact",
    doc="Multiple-identity links for human adjudication and their status (pseudonymous; no templates).",
    internal=True,
)
BIOMETRIC_ADJUDICATIONS = TopicSpec(
    "biometric.adjudications", partitions=3, retention="personal_clear", restricted=True,
    doc="Officers' decisions on links: confirm or reject (Avro).",
)
BIOMETRIC_ADJUDICATIONS_DLQ = TopicSpec(
    BIOMETRIC_ADJUDICATIONS.dlq, partitions=1, retention="personal_clear", restricted=True,
    doc="Adjudication decisions that could not be applied, with the reason.",
)

# Trafficking-pattern rules. Facts are keyed by a pseudonymous id, so every fact
# about one document, sponsor, subject or vessel reaches the same partition, where
# the rule agent keeps that key's state in a Faust table; the table's changelog
# (created by Faust, compacted) has the same partition count.
TRAFFICKING_FACTS = TopicSpec(
    "trafficking.facts", partitions=6, retention="operational",
    doc="Pseudonymous facts from crossings, landings and dedup decisions, keyed by doc:/sponsor:/subject:/vessel: "
        "id, for the trafficking rules; internal.",
    internal=True,
)
TRAFFICKING_STATE_TABLE = "trafficking_state"  # Faust table; changelog lintas-pipeline-trafficking_state-changelog
STAY_STATE_TABLE = "stay_state"  # Faust table of open stays per traveller (agents/overstay.py), same partitioning
ALERTS = TopicSpec(
    "alerts", partitions=3, retention="case", cleanup_policy="compact",
    doc="Alerts for officers' review (Avro Alert, registered), keyed by alert id: the latest copy of each "
        "pattern instance is kept; pseudonymous.",
    extra_config={"min.cleanable.dirty.ratio": "0.1"},
    internal=True,
)

# Officers' review (agents/cases.py). Decisions come from the review console and `lintas review decide`
# (Avro ReviewDecision, registered, keyed by the case or link id); the review agent checks their form and
# passes case decisions on to the case agent, link decisions to the link agent. The case agent reads one
# internal topic keyed by case id: every alert as an indicator of its key's case, and the checked decisions;
# it keeps each case in a changelog-backed table, so the order of what reaches one case is its partition's.
REVIEW_DECISIONS = TopicSpec(
    "review.decisions", partitions=3, retention="case", restricted=True,
    doc="Officers' decisions on cases (review, confirm, dismiss, refer) and on links (Avro ReviewDecision), "
        "keyed by case or link id; carries officer accounts in clear.",
)
REVIEW_DECISIONS_DLQ = TopicSpec(
    REVIEW_DECISIONS.dlq, partitions=1, retention="case", restricted=True,
    doc="Review decisions that could not be applied, with the reason (unknown case, transition not allowed).",
)
CASE_COMMANDS = TopicSpec(  # in transit only: each case's state is in its changelog, which erasure rewrites
    "review.cases", partitions=3, retention="operational",
    doc="Indicators (alerts, as their cases' evidence) and checked decisions, keyed by case id, for the case "
        "agent; pseudonymous, internal.",
    internal=True,
)
CASE_STATE_TABLE = "case_state"  # Faust table of each case's indicators and decisions (agents/cases.py)

# Identity vault (agents/vault.py): who a person token is, for operations, sealed under the person's own key;
# destroying that key (lintas erase) leaves every copy unreadable. Keyed by the token.
IDENTITY_VAULT = TopicSpec(
    "identity.vault", partitions=3, retention="personal_sealed", cleanup_policy="compact",
    doc="Identities behind operations person tokens, each sealed with its person's key (crypto-shredded on "
        "erasure); compacted, internal.",
    extra_config={"min.cleanable.dirty.ratio": "0.1"},
    internal=True,
)

# Record of processing: one JSON line per batch each component handled (agents/audit.py).
AUDIT_PROCESSING = TopicSpec(
    "audit.processing", partitions=1, retention="audit",
    doc="Record of processing (UU PDP): component, activity, data classes, purpose, counts, policy version; "
        "append-only JSON lines, no personal data.",
    internal=True,
)

# Watchlists (agents/watchlist.py): one compacted topic per list, keyed by the operations token of the
# document, written by `lintas watchlist load|remove` (validated whole, one transaction) and read in full by
# every worker. One partition each: a list is read whole anyway, and a single partition keeps a load's order.
WATCHLISTS: dict[str, TopicSpec] = {name: TopicSpec(
    f"watchlist.{name}", partitions=1, retention="watchlist", cleanup_policy="compact",
    doc=f"Watchlist {name}: entries keyed by document token (list, reason, validity, source); tombstones "
        "remove; no document number in clear.",
    extra_config={"min.cleanable.dirty.ratio": "0.1"},
    internal=True,
) for name in ("lost_stolen", "notices", "national_alerts")}

# The Faust tables' changelogs (faust names them <app id>-<table>-changelog). Created with the other topics,
# before any worker starts: a producer that meets a changelog topic created after its metadata was fetched
# cannot place the first write (aiokafka: no partitions for the topic) and the agent crashes once.
APP_ID = "lintas-pipeline"


def _changelog(table: str, partitions: int, doc: str) -> TopicSpec:
    return TopicSpec(f"{APP_ID}-{table}-changelog", partitions=partitions, retention="case", cleanup_policy="compact",
                     doc=doc, extra_config={"min.cleanable.dirty.ratio": "0.1"}, internal=True)


CHANGELOGS: tuple[TopicSpec, ...] = (
    _changelog(TRAFFICKING_STATE_TABLE, TRAFFICKING_FACTS.partitions,
               "Changelog of the rule agent's per-key state (tokens, event ids, counts); compacted, internal."),
    _changelog(STAY_STATE_TABLE, TRAFFICKING_FACTS.partitions,
               "Changelog of open stays per traveller (tokens, times); compacted, internal."),
    _changelog(LINK_STATE_TABLE, BIOMETRIC_PAIRS.partitions,
               "Changelog of each link's pairs and decision (subject ids, tokens, scores); compacted, internal."),
    _changelog(CASE_STATE_TABLE, CASE_COMMANDS.partitions,
               "Changelog of each case's indicators and decisions (tokens, rule ids, officer tokens); compacted, "
               "internal."),
)



# The worker's batch agents (streams/app.py): each reads one topic in a consumer group of its own,
# ``<app id>-<agent>``, so each commits only what it has done. The officers' decision agents are Faust
# agents in the app's own group (``APP_ID``).
AGENTS: dict[str, TopicSpec] = {
    "ingest_crossings": CROSSING_EVENTS,
    "ingest_landings": LANDING_EVENTS,
    "dedup_shards": BIOMETRIC_PROBES,
    "dedup_links": BIOMETRIC_PAIRS,
    "trafficking_rules": TRAFFICKING_FACTS,
    "cases": CASE_COMMANDS,
}


def agent_group(agent: str) -> str:
    """The consumer group of one batch agent."""
    return f"{APP_ID}-{agent}"


def changelog_of(table: str) -> TopicSpec:
    """The changelog topic of one of the worker's tables."""
    return next(t for t in CHANGELOGS if t.name == f"{APP_ID}-{table}-changelog")


ALL_TOPICS: tuple[TopicSpec, ...] = (
    CROSSING_EVENTS,
    LANDING_EVENTS,
    CROSSING_EVENTS_DLQ,
    LANDING_EVENTS_DLQ,
    BIOMETRIC_PROBES,
    BIOMETRIC_GALLERY,
    BIOMETRIC_PAIRS,
    BIOMETRIC_LINKS,
    BIOMETRIC_ADJUDICATIONS,
    BIOMETRIC_ADJUDICATIONS_DLQ,
    TRAFFICKING_FACTS,
    ALERTS,
    REVIEW_DECISIONS,
    REVIEW_DECISIONS_DLQ,
    CASE_COMMANDS,
    IDENTITY_VAULT,
    AUDIT_PROCESSING,
    *WATCHLISTS.values(),
    *CHANGELOGS,
)
