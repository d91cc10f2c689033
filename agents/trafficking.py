"""Trafficking-pattern rules: pseudonymous facts in, explainable alerts for human review out.

No single indicator proves trafficking (UNODC); each alert is a reason for a
trained officer to look, with the evidence that raised it. Nothing here decides
about a person.

How it runs. Ingest turns every crossing into a few :class:`Fact` s keyed by a
pseudonymous id (``doc:<document token>`` for the traveller and for each escort,
``sponsor:<token>`` for an unregistered sponsor), every landing into one keyed by
its vessel (or site), and dedup turns every decision into two (the subject seen
with the document, and the document seen with the subject). Facts go to
``trafficking.facts`` keyed by that id, so everything about one key lands on one
partition, and the Faust agent keeps one :class:`KeyState` per key in a
changelog-backed table. :func:`evaluate` is the whole rule engine: one fact and
its key's state in, the new state and any alerts out. It is pure and
deterministic:

* windows run on event time (the facts' own timestamps), not on the clock;
* a fact already in the state changes nothing, so a replay after a crash (Kafka
  redelivers what was not committed) neither double-counts nor re-alerts;
* an alert's id is its rule, its key and its first evidence event, and its
  version is its evidence count: a pattern instance is one alert that is
  updated as evidence grows (same id, more evidence), never repeated.

The rules and the indicators they map to (codes in ``trafficking_rules.toml``):

``escort_fanout``
    One escort document with many travellers not declared as close family
    within a window. UNODC Human Trafficking Indicators: victims "are
    accompanied by others" who speak for them; ILO forced-labour indicator
    *deception*. HIGH when a minor is among them.
``sponsor_fanout``
    One unregistered employer, agency or private sponsor declared by many
    travellers. ILO *deception*; recruitment outside licensed channels
    (Bali Process screening guidance, Indonesia's P3MI licensing).
``minor_unrelated_adult`` / ``unaccompanied_minor``
    A minor crossing with companions of whom none is a parent or legal
    guardian, or alone. UNODC indicators for children.
``shuttling``
    A document that exits repeatedly within a window while escorting changing
    companions (routine commuters and crew exempt). UNODC / IOM escort
    indicators.
``document_multiple_subjects`` / ``subject_multiple_documents``
    One document carried by several biometric subjects, or one subject
    presenting several documents (from dedup). UNODC: false or borrowed
    documents; ILO *retention of identity documents*.
``impossible_travel``
    One document at two posts faster than anyone can travel between them.
``route.<name>``
    A document's crossings following a configured risk route (Riau islands →
    Singapore → Cambodia; transit through Malaysia / Singapore to the Middle
    East) with the configured purposes, or declaring such a destination.
``non_procedural_work_exit`` / ``tourist_exit_recruitment_corridor``
    Work exits without a placement id; tourist exits of working-age nationals
    through the land and sea corridors known for non-procedural placement
    (Entikong, Aruk/Sambas, Nunukan). The second is LOW severity: the data of
    one crossing cannot tell a tourist from a recruit.
``maritime_landing`` / ``repeat_vessel``
    Boat landings with many people or a high share of minors; the same vessel
    landing again.
``anomaly_score``
    A document whose window of crossings and escorted travellers an
    IsolationForest finds unusual (:mod:`agents.anomaly`); LOW, with the
    features that stand out as its explanation.
"""

from __future__ import annotations

import hashlib
import io
import json
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro

from agents.pseudonymise import Tokeniser, document_token, person_token
from streams.errors import LintasError
from streams.geography import POSTS, distance_km
from streams.wire import avro_bytes

RULES_FILE = Path(__file__).resolve().parent / "trafficking_rules.toml"
FACT_SCHEMA = fastavro.parse_schema(json.loads(
    (Path(__file__).resolve().parent.parent / "schemas" / "internal" / "TraffickingFact.avsc").read_text()))
HOUR_MS = 3_600_000
SEVERITY_RANK = {"LOW": 0, "MEDIUM": 1, "HIGH": 2}
# Rules every rules file must configure, with the keys each needs.
REQUIRED: dict[str, tuple[str, ...]] = {
    "escort_fanout": ("window_hours", "min_travellers", "family", "severity_with_minor"),
    "sponsor_fanout": ("window_hours", "min_travellers", "kinds"),
    "minor_unrelated_adult": ("window_hours", "guardians"),
    "unaccompanied_minor": ("window_hours",),
    "shuttling": ("window_hours", "min_exits", "min_companions", "occasion_gap_hours", "exempt_visas",
                  "exempt_purposes"),
    "document_multiple_subjects": ("window_hours", "min_subjects"),
    "subject_multiple_documents": ("window_hours", "min_documents"),
    "impossible_travel": ("window_hours", "speed_kmh", "minimum_hours"),
    "non_procedural_work_exit": ("window_hours", "origin_countries", "nationalities"),
    "tourist_exit_recruitment_corridor": ("window_hours", "posts", "nationalities", "purposes", "visas", "age_bands"),
    "maritime_landing": ("min_persons", "min_minor_share", "severity_with_minors"),
    "repeat_vessel": ("window_hours", "min_landings"),
    "anomaly_score": ("window_hours", "top_features", "alert_rate"),
}


class RulesError(LintasError):
    """The rules file is missing, unreadable or incomplete; names the rule and key."""

    code = "rules_invalid"


# -- configuration ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """One rule's settings from the rules file."""

    rule_id: str
    version: int
    severity: str
    indicators: tuple[str, ...]
    window_ms: int
    params: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        """A parameter of the rule (thresholds, lists)."""
        return self.params[key]


@dataclass(frozen=True)
class RuleSet:
    """Every rule and route of one rules file, and the file's version."""

    version: str
    rules: dict[str, Rule]
    routes: tuple[Rule, ...]

    @property
    def horizon_ms(self) -> int:
        """How long any rule looks back: older evidence is dropped from the state."""
        return max(r.window_ms for r in [*self.rules.values(), *self.routes])

    def rule(self, rule_id: str) -> Rule:
        """The rule (or route) with that id."""
        if rule_id in self.rules:
            return self.rules[rule_id]
        return next(r for r in self.routes if r.rule_id == rule_id)


def _rule(rule_id: str, raw: dict[str, Any], required: Iterable[str]) -> Rule:
    for key in ("version", "severity", "indicators", *required):
        if key not in raw:
            raise RulesError(f"rule {rule_id}: missing key {key!r}")
    for key in ("severity", "severity_with_minor", "severity_with_minors"):
        if key in raw and raw[key] not in SEVERITY_RANK:
            raise RulesError(f"rule {rule_id}: {key} must be one of {sorted(SEVERITY_RANK)}")
    if not raw["indicators"]:
        raise RulesError(f"rule {rule_id}: indicators must cite at least one published indicator")
    return Rule(rule_id, int(raw["version"]), raw["severity"], tuple(raw["indicators"]),
                int(float(raw.get("window_hours", 0)) * HOUR_MS), dict(raw))


def load_rules(path: Path | None = None) -> RuleSet:
    """Parse and check a rules file (default: the one shipped next to this module)."""
    path = path or RULES_FILE
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise RulesError(f"rules file {path}: {err}") from err
    if not raw.get("version"):
        raise RulesError(f"rules file {path}: missing top-level 'version'")
    configured = raw.get("rules", {})
    rules = {rid: _rule(rid, configured.get(rid, {}), keys) for rid, keys in REQUIRED.items()}
    unknown = sorted(set(configured) - set(REQUIRED))
    if unknown:
        raise RulesError(f"rules file {path}: unknown rule(s) {unknown}")
    routes = []
    for name, route in raw.get("routes", {}).items():
        rule = _rule(f"route.{name}", route, ("window_hours", "legs", "purposes"))
        for n, leg in enumerate(rule["legs"]):
            if leg.get("direction") not in ("ENTRY", "EXIT") or not (leg.get("posts") or leg.get("countries")):
                raise RulesError(f"rule route.{name}: leg {n} needs direction ENTRY|EXIT and posts or countries")
        routes.append(rule)
    return RuleSet(str(raw["version"]), rules, tuple(routes))


# -- facts --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Companion:
    """A companion of a crossing traveller: document token and declared relationship."""

    token: str
    relationship: str
    is_escort: bool


@dataclass(frozen=True)
class Fact:
    """One pseudonymous fact about one key (see the module docstring); the TraffickingFact record."""

    key: str
    role: str
    event_id: str
    occurred_at: datetime
    post_id: str = ""
    post_country: str = ""
    direction: str = ""
    traveller: str = ""
    subject: str = ""
    is_minor: bool = False
    age_band: str = ""
    nationality: str = ""
    relationship: str = ""
    companions: tuple[Companion, ...] = ()
    travel_purpose: str = ""
    visa_type: str = ""
    has_placement: bool = False
    sponsor_kind: str = ""
    sponsor_registered: bool = False
    origin_country: str = ""
    destination_country: str = ""
    adults: int = 0
    minors: int = 0
    unaccompanied_minors: int = 0
    refused: bool = False
    score: float = 0.0  # BIOMETRIC: the capture's best 1:1 score; DOCUMENT (from a link): the link's score
    quality: float = 0.0  # BIOMETRIC: the capture's quality
    thresholds_version: str = ""  # BIOMETRIC / DOCUMENT: the dedup thresholds the score was judged by
    revision: int = 0  # BIOMETRIC / DOCUMENT: a later revision of the same decision or link replaces an earlier one

    @property
    def ms(self) -> int:
        """Event time in epoch milliseconds."""
        return int(self.occurred_at.timestamp() * 1000)

    def to_bytes(self) -> bytes:
        """Avro binary (internal schema, no registry)."""
        record = asdict(self)
        return avro_bytes(FACT_SCHEMA, record)

    @classmethod
    def from_bytes(cls, data: bytes) -> Fact:
        """Read a fact written by :meth:`to_bytes`."""
        rec: dict[str, Any] = fastavro.schemaless_reader(io.BytesIO(data), FACT_SCHEMA, FACT_SCHEMA)  # type: ignore[assignment]
        rec["companions"] = tuple(Companion(**c) for c in rec["companions"])
        return cls(**rec)


def crossing_facts(record: dict[str, Any], row: dict[str, Any], tok: Tokeniser) -> list[Fact]:
    """The facts of one decoded crossing: the traveller's own, one per escort, one for an unregistered sponsor.

    Codes come from the analytics ``row``; every token is made again with ``tok``,
    the operations key, so facts and alerts never carry an analytics token.
    """
    companions = tuple(Companion(document_token(tok, c["document_issuing_state"], c["document_number"]),
                                 c["relationship"], bool(c.get("is_escort"))) for c in record.get("companions") or [])
    traveller = person_token(tok, record["traveller"])
    sponsor = record.get("sponsor")
    base = dict(
        event_id=str(record["event_id"]), occurred_at=row["occurred_at"], post_id=row["post_id"],
        post_country=row["post_country"], direction=row["direction"], traveller=traveller,
        is_minor=bool(row["is_minor"]), age_band=row["age_band"], nationality=row["nationality"],
        travel_purpose=row["travel_purpose"], visa_type=row["visa_type"], has_placement=bool(row["has_placement"]),
        sponsor_kind=row["sponsor_kind"], sponsor_registered=bool(row["sponsor_registered"]),
        origin_country=row["origin_country"], destination_country=row["destination_country"],
        refused=bool(row["refused"]),
    )
    facts = [Fact(key=f"doc:{traveller}", role="SELF", companions=companions, **base)]
    facts += [Fact(key=f"doc:{c.token}", role="ESCORT", relationship=c.relationship, **base)
              for c in companions if c.is_escort and c.token != traveller]
    if sponsor and not sponsor.get("registration_id"):
        facts.append(Fact(key=f"sponsor:{tok.token('sponsor', sponsor['name'])}", role="SPONSOR", **base))
    return facts


def landing_facts(record: dict[str, Any], row: dict[str, Any], tok: Tokeniser) -> list[Fact]:
    """The fact of one landing, keyed by its vessel (operations token) when known, else by its site."""
    vessel = record["vessel"]
    vessel_ref = vessel.get("registration") or vessel.get("name") or ""
    key = f"vessel:{tok.token('vessel', vessel_ref)}" if vessel_ref else f"site:{row['site_id']}"
    return [Fact(key=key, role="LANDING", event_id=str(row["landing_id"]), occurred_at=row["occurred_at"],
                 post_id=row["site_id"], post_country=row["country"], adults=int(row["adults"]),
                 minors=int(row["minors"]), unaccompanied_minors=int(row["unaccompanied_minors"]))]


def decision_facts(decision: dict[str, Any]) -> list[Fact]:
    """The fact of one dedup decision: a biometric subject seen with a document (name identities give none).

    Only a capture judged *another face* (well below the impostor threshold, at good quality)
    brings a document a second subject, which is what ``document_multiple_subjects`` counts.
    """
    subject, identity = decision["subject_id"], decision["identity_token"]
    if not subject or not identity or decision.get("identity_kind", "document") != "document":
        return []
    score = decision.get("score", 0.0)
    return [Fact(key=f"doc:{identity}", role="BIOMETRIC", subject=subject, traveller=identity,
                 event_id=str(decision["event_id"]), occurred_at=decision["occurred_at"], post_id=decision["post_id"],
                 score=0.0 if score != score else float(score), quality=float(decision.get("quality", 0.0)),
                 thresholds_version=decision.get("thresholds_version", ""), revision=int(decision.get("revision", 0)))]


def link_facts(facts: Iterable[dict[str, Any]]) -> list[Fact]:
    """The facts a red or confirmed link gives ``subject_multiple_documents``: its subject, seen with both documents.

    A link that is no longer red nor confirmed sends them again without a document (``traveller`` empty):
    the rule then withdraws its alert.
    """
    return [Fact(key=f["key"], role="DOCUMENT", event_id=f["event_id"], occurred_at=f["occurred_at"],
                 post_id=f["post_id"], traveller=f["traveller"], subject=f["subject"], score=f["score"],
                 thresholds_version=f["thresholds_version"], revision=int(f.get("revision", 0))) for f in facts]


# -- state --------------------------------------------------------------------------------------------------------
@dataclass
class KeyState:
    """Everything the rules remember about one key, within the longest window; JSON in the changelog.

    Entries are lists of plain values, oldest first; ``seen`` holds (event id,
    role) of every fact applied, so a replayed fact is recognised.
    """

    # SELF: [ms, event, post, country, direction, purpose, visa, destination]
    crossings: list[list[Any]] = field(default_factory=list)
    escorted: list[list[Any]] = field(default_factory=list)   # ESCORT: [ms, event, traveller, minor, relation, post]
    sponsored: list[list[Any]] = field(default_factory=list)  # SPONSOR: [ms, event, traveller, post]
    subjects: list[list[Any]] = field(default_factory=list)   # BIOMETRIC: [ms, event, subject, post]
    documents: list[list[Any]] = field(default_factory=list)  # DOCUMENT: [ms, event, document, post]
    landings: list[list[Any]] = field(default_factory=list)   # LANDING: [ms, event, site]
    episodes: dict[str, dict[str, Any]] = field(default_factory=dict)  # alert id → the alert as last emitted
    current: dict[str, str] = field(default_factory=dict)  # rule (or rule/instance) → its open episode's alert id
    seen: list[str] = field(default_factory=list)
    max_ms: int = 0

    def to_bytes(self) -> bytes:
        """Compact JSON for the table's changelog."""
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes | None) -> KeyState:
        """The state stored by :meth:`to_bytes`, or a fresh one."""
        return cls(**json.loads(data)) if data else cls()

    def prune(self, horizon_ms: int) -> None:
        """Forget evidence older than the longest window before the newest fact."""
        floor = self.max_ms - horizon_ms
        for name in ("crossings", "escorted", "sponsored", "subjects", "documents", "landings"):
            entries = getattr(self, name)
            keep = [e for e in entries if e[0] >= floor]
            if len(keep) != len(entries):
                setattr(self, name, keep)
        live = {e[1] for name in ("crossings", "escorted", "sponsored", "subjects", "documents", "landings")
                for e in getattr(self, name)}
        self.seen = [s for s in self.seen if s.rsplit("/", 1)[0] in live]
        self.episodes = {a: ep for a, ep in self.episodes.items() if ep["last_ms"] >= floor}
        self.current = {slot: a for slot, a in self.current.items() if a in self.episodes}


@dataclass(frozen=True)
class Finding:
    """What a rule found in one key's state: the evidence and people, how serious, and why."""

    rule_id: str
    evidence: tuple[tuple[int, str, str], ...]  # (ms, event id, post), oldest first
    subjects: tuple[str, ...]
    severity: str
    explanation: str
    features: dict[str, float]
    instance: str = ""  # one alert per instance, not per window: an event (a landing), or the key itself


@dataclass(frozen=True)
class Alert:
    """One alert (new or grown), ready for the alerts topic and table."""

    alert_id: str
    rule_id: str
    rule_version: int
    rules_version: str
    indicators: tuple[str, ...]
    severity: str
    key_kind: str
    key_token: str
    subjects: tuple[str, ...]
    evidence_event_ids: tuple[str, ...]
    post_ids: tuple[str, ...]
    explanation: str
    features: dict[str, float]
    first_seen: datetime
    last_seen: datetime
    status: str = "ACTIVE"  # WITHDRAWN: the dedup decisions it rested on were revised before anyone reviewed it
    revision: int = 0  # how often the alert changed: the latest change replaces the earlier copies

    def record(self, key_id: str, family: str = "trafficking") -> dict[str, Any]:
        """The Alert Avro record."""
        rec = asdict(self)
        del rec["revision"]
        for name in ("indicators", "subjects", "evidence_event_ids", "post_ids"):
            rec[name] = list(rec[name])
        return {**rec, "family": family, "key_id": key_id}

    def row(self, key_id: str, detected_at: datetime, family: str = "trafficking") -> dict[str, Any]:
        """The ``alerts`` table row; ``version`` (the evidence count) makes the grown alert replace the old."""
        rec = self.record(key_id, family)
        rec["features"] = {k: float(v) for k, v in rec["features"].items()}
        return {**rec, "evidence_count": len(self.evidence_event_ids), "version": _version(self),
                "detected_at": detected_at}


def _version(alert: Alert) -> int:
    # a later change wins; within one (a redelivery) more evidence, then a higher severity
    return alert.revision * 10**6 + len(alert.evidence_event_ids) * 4 + SEVERITY_RANK[alert.severity]


# -- the engine ---------------------------------------------------------------------------------------------------
def evaluate(fact: Fact, state: KeyState, rules: RuleSet) -> tuple[KeyState, list[Alert]]:
    """Apply one fact to its key's state and run the rules of its role; the state is updated in place.

    A fact already applied (same event, same role) changes nothing; it re-sends the current
    alerts it is evidence of, unchanged. That is what a redelivery after a crash needs: the
    state may have reached the changelog before the alerts reached Kafka.
    """
    # a dedup decision can be revised (its identity's captures arrived out of order): a new subject is new
    seen_id = f"{fact.event_id}/{fact.role}" + (f"#{fact.revision}" if fact.role in _REVISABLE else "")
    if seen_id in state.seen:
        return state, [_alert(fact.key, ep) for ep in state.episodes.values()
                       if any(e[1] == fact.event_id for e in ep["evidence"])]
    state.seen.append(seen_id)
    state.max_ms = max(state.max_ms, fact.ms)
    findings = list(_RULES_BY_ROLE[fact.role](fact, state, rules))
    alerts = [a for f in findings if (a := _emit(fact.key, f, state, rules)) is not None]
    revisable = _REVISABLE.get(fact.role)
    if revisable and not any(f.rule_id == revisable for f in findings):
        withdrawn = _withdraw(fact.key, revisable, state)
        alerts += [withdrawn] if withdrawn else []
    state.prune(rules.horizon_ms)
    return state, alerts


def erase(key: str, state: KeyState, token: str) -> KeyState | None:
    """The state of ``key`` after the person or subject ``token`` was erased: ``None`` (delete) if it is theirs.

    In another key's state (an escort's, a sponsor's, a document's subjects) every entry naming
    the token goes, and the token leaves its episodes' subjects; the evidence counts stay as they were.
    """
    if key.partition(":")[2] == token:
        return None
    for name in ("escorted", "sponsored", "subjects", "documents"):
        setattr(state, name, [e for e in getattr(state, name) if token not in e])
    for ep in state.episodes.values():
        ep["subjects"] = [s for s in ep["subjects"] if s != token]
    return state


def _emit(key: str, finding: Finding, state: KeyState, rules: RuleSet) -> Alert | None:
    """Open or grow the finding's episode; an alert only when the evidence or the severity changed."""
    rule = rules.rule(finding.rule_id)
    slot = f"{finding.rule_id}/{finding.instance}" if finding.instance else finding.rule_id
    ep = state.episodes.get(state.current.get(slot, ""))
    first_ms = finding.evidence[0][0]
    if ep is not None and not finding.instance and first_ms - ep["last_ms"] > rule.window_ms:
        ep = None  # the last episode ended a window ago: this is a new pattern instance
    evidence = sorted({(ms, event, post) for ms, event, post in finding.evidence}
                      | {tuple(e) for e in (ep["evidence"] if ep else [])})  # type: ignore[misc]
    severity = finding.severity
    if ep is not None:
        if SEVERITY_RANK[ep["severity"]] > SEVERITY_RANK[severity]:
            severity = ep["severity"]
        active = ep.get("status", "ACTIVE") == "ACTIVE"
        if len(evidence) == len(ep["evidence"]) and severity == ep["severity"] and active:
            return None
        alert_id = ep["alert_id"]
    else:
        anchor = finding.instance or evidence[0][1]
        alert_id = "A" + hashlib.sha256(f"{finding.rule_id}\x1f{key}\x1f{anchor}".encode()).hexdigest()[:31]
    state.current[slot] = alert_id
    state.episodes[alert_id] = {
        "alert_id": alert_id, "rule_id": finding.rule_id, "rule_version": rule.version,
        "rules_version": rules.version, "indicators": list(rule.indicators), "severity": severity,
        "first_ms": evidence[0][0], "last_ms": evidence[-1][0], "evidence": [list(e) for e in evidence],
        "subjects": sorted(set(finding.subjects) | set(ep["subjects"] if ep else ())),
        "explanation": finding.explanation, "features": finding.features,
        "status": "ACTIVE", "revision": (ep.get("revision", 0) + 1) if ep else 0,
    }
    return _alert(key, state.episodes[alert_id])


def _withdraw(key: str, rule_id: str, state: KeyState) -> Alert | None:
    """A per-key finding that no longer holds (its dedup decisions were revised): its alert is withdrawn."""
    ep = state.episodes.get(state.current.get(f"{rule_id}/key", ""))
    if ep is None or ep.get("status", "ACTIVE") != "ACTIVE":
        return None
    ep["status"], ep["revision"] = "WITHDRAWN", ep.get("revision", 0) + 1
    return _alert(key, ep)


def _alert(key: str, ep: dict[str, Any]) -> Alert:
    """The alert an episode stands for, as last emitted."""
    kind, _, token = key.partition(":")
    evidence = ep["evidence"]
    return Alert(
        alert_id=ep["alert_id"], rule_id=ep["rule_id"], rule_version=ep["rule_version"],
        rules_version=ep["rules_version"], indicators=tuple(ep["indicators"]), severity=ep["severity"],
        key_kind=kind, key_token=token, subjects=tuple(ep["subjects"]),
        evidence_event_ids=tuple(_unique(e[1] for e in evidence)),
        post_ids=tuple(sorted({e[2] for e in evidence if e[2]})), explanation=ep["explanation"],
        features=dict(ep["features"]), first_seen=_dt(evidence[0][0]), last_seen=_dt(evidence[-1][0]),
        status=ep.get("status", "ACTIVE"), revision=ep.get("revision", 0),
    )


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def within(entries: list[list[Any]], now_ms: int, window_ms: int) -> list[list[Any]]:
    """State entries whose time lies in the window ending at ``now_ms``."""
    return [e for e in entries if now_ms - window_ms <= e[0] <= now_ms]


# SELF: the key's own crossing -------------------------------------------------------------------------------------
def _on_self(fact: Fact, state: KeyState, rules: RuleSet) -> Iterator[Finding]:
    state.crossings.append([fact.ms, fact.event_id, fact.post_id, fact.post_country, fact.direction,
                            fact.travel_purpose, fact.visa_type, fact.destination_country])
    state.crossings.sort(key=lambda e: (e[0], e[1]))
    here = ((fact.ms, fact.event_id, fact.post_id),)
    me = fact.key.partition(":")[2]
    if fact.is_minor:
        guardians = set(rules.rule("minor_unrelated_adult")["guardians"])
        others = [c for c in fact.companions if c.relationship not in guardians]
        if not fact.companions:
            yield Finding("unaccompanied_minor", here, (me,), rules.rule("unaccompanied_minor").severity,
                          f"minor ({fact.age_band}) crossing with no companion declared", {"companions": 0.0})
        elif len(others) == len(fact.companions):
            rels = ", ".join(sorted({c.relationship for c in others}))
            yield Finding("minor_unrelated_adult", here, (me, *sorted(c.token for c in others)),
                          rules.rule("minor_unrelated_adult").severity,
                          f"minor ({fact.age_band}) crossing with {len(others)} companion(s) of whom none is a "
                          f"parent or legal guardian (declared: {rels})",
                          {"companions": float(len(others)), "escorts": float(sum(c.is_escort for c in others))})
    if fact.direction == "EXIT":
        yield from _labour_exit(fact, here, me, rules)
    yield from _impossible_travel(fact, state, me, rules)
    shuttling = rules.rule("shuttling")
    if fact.visa_type not in shuttling["exempt_visas"] and fact.travel_purpose not in shuttling["exempt_purposes"]:
        yield from _shuttling(fact.ms, state, me, rules)
    for route in rules.routes:
        yield from _route(route, fact, state, me)


def _labour_exit(fact: Fact, here: tuple[tuple[int, str, str], ...], me: str, rules: RuleSet) -> Iterator[Finding]:
    work = rules.rule("non_procedural_work_exit")
    if (fact.travel_purpose == "WORK" and not fact.has_placement and fact.post_country in work["origin_countries"]
            and fact.nationality in work["nationalities"]):
        sponsor = f"{fact.sponsor_kind.lower()} sponsor" if fact.sponsor_kind else "no sponsor"
        yield Finding("non_procedural_work_exit", here, (me,), work.severity,
                      f"work exit from {fact.post_country} without a placement id ({sponsor}, "
                      f"{'registered' if fact.sponsor_registered else 'unregistered'})",
                      {"has_placement": 0.0, "sponsor_registered": float(fact.sponsor_registered)})
    corridor = rules.rule("tourist_exit_recruitment_corridor")
    if (fact.post_id in corridor["posts"] and fact.nationality in corridor["nationalities"]
            and fact.travel_purpose in corridor["purposes"] and fact.visa_type in corridor["visas"]
            and fact.age_band in corridor["age_bands"] and not fact.has_placement):
        yield Finding("tourist_exit_recruitment_corridor", here, (me,), corridor.severity,
                      f"{fact.travel_purpose.lower()} exit of a working-age ({fact.age_band}) national through "
                      f"{fact.post_id}, a known non-procedural placement corridor",
                      {"working_age": 1.0})


def _impossible_travel(fact: Fact, state: KeyState, me: str, rules: RuleSet) -> Iterator[Finding]:
    rule = rules.rule("impossible_travel")
    for e in within(state.crossings, fact.ms + rule.window_ms, 2 * rule.window_ms):
        if e[1] == fact.event_id or e[2] == fact.post_id:
            continue
        needed = travel_hours(e[2], fact.post_id, rule["speed_kmh"], rule["minimum_hours"])
        gap = abs(fact.ms - e[0]) / HOUR_MS
        if needed is not None and gap < needed:
            first, second = sorted([(e[0], e[1], e[2]), (fact.ms, fact.event_id, fact.post_id)])
            yield Finding("impossible_travel", (first, second), (me,), rule.severity,
                          f"one document at {first[2]} and {second[2]} {gap:.1f} h apart; the journey needs at "
                          f"least {needed:.1f} h", {"gap_hours": round(gap, 2), "needed_hours": round(needed, 2)})
            return


def travel_hours(post_a: str, post_b: str, speed_kmh: float, minimum_hours: float) -> float | None:
    """The least time to get from one post to the other; None if a post's place is unknown."""
    a, b = POSTS.get(post_a), POSTS.get(post_b)
    if a is None or b is None or not (a.latitude or a.longitude) or not (b.latitude or b.longitude):
        return None
    return minimum_hours + distance_km(a, b) / speed_kmh


def _shuttling(now_ms: int, state: KeyState, me: str, rules: RuleSet) -> Iterator[Finding]:
    rule = rules.rule("shuttling")
    exits = [e for e in within(state.crossings, now_ms, rule.window_ms)
             if e[4] == "EXIT" and e[6] not in rule["exempt_visas"] and e[5] not in rule["exempt_purposes"]]
    escorted = within(state.escorted, now_ms, rule.window_ms)
    occasions = escort_occasions(escorted, int(rule["occasion_gap_hours"] * HOUR_MS))
    companions = {e[2] for e in escorted}
    enough = min(occasions, len(companions)) >= rule["min_companions"]
    if len(exits) >= rule["min_exits"] and enough:
        evidence = tuple((e[0], e[1], e[2]) for e in exits) + tuple((e[0], e[1], e[5]) for e in escorted)
        hours = rule.window_ms // HOUR_MS
        yield Finding("shuttling", evidence, (me, *sorted(companions)), rule.severity,
                      f"{len(exits)} exits within {hours} h while escorting {len(companions)} different "
                      f"companions on {occasions} occasions "
                      f"(thresholds {rule['min_exits']} and {rule['min_companions']})",
                      {"exits": float(len(exits)), "companions": float(len(companions)), "occasions": float(occasions),
                       "window_hours": float(hours)})


def escort_occasions(escorted: list[list[Any]], gap_ms: int) -> int:
    """Separate escorting trips: escorted crossings at least ``gap_ms`` apart."""
    count, last = 0, None
    for e in sorted(escorted, key=lambda e: e[0]):
        if last is None or e[0] - last >= gap_ms:
            count += 1
            last = e[0]
    return count


def _route(route: Rule, fact: Fact, state: KeyState, me: str) -> Iterator[Finding]:
    crossings = within(state.crossings, fact.ms, route.window_ms)
    matched: list[list[Any]] = []
    legs = route["legs"]
    for e in crossings:  # greedy in-order match of the legs
        if len(matched) == len(legs):
            break
        leg = legs[len(matched)]
        if (e[4] == leg["direction"] and (e[2] in leg.get("posts", []) or e[3] in leg.get("countries", []))
                and e[5] in route["purposes"] and e[7] in leg.get("destinations", [e[7]])):
            matched.append(e)
    if not matched or fact.event_id not in {e[1] for e in matched}:
        return
    # one-way onward travel declared at the first leg, or the whole route travelled
    declared = [matched[0][7]] if matched[0][7] in route.params.get("destinations", []) else []
    if not (declared or len(matched) == len(legs)):
        return
    name = route.rule_id.split(".", 1)[1].replace("_", " ")
    why = f"declared destination {', '.join(declared)}" if declared else "the whole route"
    yield Finding(route.rule_id, tuple((e[0], e[1], e[2]) for e in matched), (me,), route.severity,
                  f"{len(matched)} of {len(legs)} legs of the {name} route ({' → '.join(e[2] for e in matched)}), "
                  f"purpose {'/'.join(sorted({e[5] for e in matched}))}, {why}",
                  {"legs_matched": float(len(matched)), "legs": float(len(legs))})


# ESCORT / SPONSOR: travellers linked to the key -------------------------------------------------------------------
def _on_escort(fact: Fact, state: KeyState, rules: RuleSet) -> Iterator[Finding]:
    state.escorted.append([fact.ms, fact.event_id, fact.traveller, fact.is_minor, fact.relationship, fact.post_id])
    rule = rules.rule("escort_fanout")
    family = set(rule["family"])
    recent = [e for e in within(state.escorted, fact.ms, rule.window_ms) if e[4] not in family]
    travellers = {e[2] for e in recent}
    me = fact.key.partition(":")[2]
    if len(travellers) >= rule["min_travellers"]:
        minors = {e[2] for e in recent if e[3]}
        severity = rule["severity_with_minor"] if minors else rule.severity
        hours = rule.window_ms // HOUR_MS
        yield Finding("escort_fanout", tuple((e[0], e[1], e[5]) for e in recent), (me, *sorted(travellers)), severity,
                      f"one escort with {len(travellers)} travellers not declared as close family within {hours} h "
                      f"({len(minors)} minor(s)); threshold {rule['min_travellers']}",
                      {"travellers": float(len(travellers)), "minors": float(len(minors)),
                       "window_hours": float(hours)})
    # an escort's own exits may now complete a shuttling pattern
    yield from _shuttling(fact.ms, state, me, rules)


def _on_sponsor(fact: Fact, state: KeyState, rules: RuleSet) -> Iterator[Finding]:
    rule = rules.rule("sponsor_fanout")
    if fact.sponsor_kind not in rule["kinds"] or fact.sponsor_registered:
        return
    state.sponsored.append([fact.ms, fact.event_id, fact.traveller, fact.post_id])
    recent = within(state.sponsored, fact.ms, rule.window_ms)
    travellers = {e[2] for e in recent}
    if len(travellers) >= rule["min_travellers"]:
        hours = rule.window_ms // HOUR_MS
        yield Finding("sponsor_fanout", tuple((e[0], e[1], e[3]) for e in recent), tuple(sorted(travellers)),
                      rule.severity,
                      f"one unregistered {fact.sponsor_kind.lower()} declared by {len(travellers)} travellers within "
                      f"{hours} h; threshold {rule['min_travellers']}",
                      {"travellers": float(len(travellers)), "window_hours": float(hours)})


# BIOMETRIC / DOCUMENT: from dedup -------------------------------------------------------------------------------
def _replace(entries: list[list[Any]], fact: Fact, entry: list[Any] | None) -> list[list[Any]]:
    """``entries`` with the fact's event at its revision (``entry``, or none); an older revision changes nothing."""
    held = [e for e in entries if e[1] == fact.event_id]
    if any(len(e) > 7 and e[7] > fact.revision for e in held):
        return entries  # a replayed earlier revision
    kept = [e for e in entries if e[1] != fact.event_id]
    return [*kept, entry] if entry is not None else kept


def _on_biometric(fact: Fact, state: KeyState, rules: RuleSet) -> Iterator[Finding]:
    state.subjects = _replace(state.subjects, fact, [fact.ms, fact.event_id, fact.subject, fact.post_id, fact.score,
                                                     fact.quality, fact.thresholds_version, fact.revision])
    for found in _many(fact, state.subjects, rules.rule("document_multiple_subjects"), "min_subjects",
                       "one document presented by {n} different biometric subjects", "subjects"):
        evidence = [e for e in within(state.subjects, fact.ms, rules.rule("document_multiple_subjects").window_ms)
                    if len(e) > 6 and e[4]]
        if evidence:  # the capture that failed verification worst: its 1:1 score and quality
            low = min(evidence, key=lambda e: e[4])
            found = replace(found, explanation=f"{found.explanation}; a capture scored {low[4]:.3f} against the "
                            f"document's subject at quality {low[5]:.2f} (thresholds {low[6]})",
                            features={**found.features, "lowest_score": float(low[4]), "quality": float(low[5])})
        yield found


def _on_document(fact: Fact, state: KeyState, rules: RuleSet) -> Iterator[Finding]:
    # no document: the link is no longer red nor confirmed, its documents go
    state.documents = _replace(state.documents, fact, [fact.ms, fact.event_id, fact.traveller, fact.post_id, fact.score,
                                                       fact.thresholds_version, "", fact.revision]
                               if fact.traveller else None)
    for found in _many(fact, state.documents, rules.rule("subject_multiple_documents"), "min_documents",
                       "one biometric subject presenting {n} different documents", "documents"):
        linked = [e for e in state.documents if len(e) > 5 and e[4]]
        if linked:
            best = max(linked, key=lambda e: e[4])
            found = replace(found, explanation=f"{found.explanation}; faces linked at {best[4]:.3f} "
                            f"(thresholds {best[5]}, a red or officer-confirmed link)",
                            features={**found.features, "link_score": float(best[4])})
        yield found


def _many(fact: Fact, entries: list[list[Any]], rule: Rule, threshold: str, text: str,
          feature: str) -> Iterator[Finding]:
    """Several distinct values (``entry[2]``) seen with one key within one window that holds this fact.

    Every window of the rule's length holding the fact is tried (one starting at each entry up to
    a window before it), not only the one ending at it: facts arriving out of event-time order
    must find what they would have found in order.
    """
    near = [e for e in entries if abs(e[0] - fact.ms) <= rule.window_ms]
    if len({e[2] for e in near}) < rule[threshold]:
        return  # not even the two windows' span together holds enough (the common case: one subject)
    starts = sorted({e[0] for e in near if e[0] <= fact.ms})
    recent: list[list[Any]] = []
    for start in starts:
        held = [e for e in near if start <= e[0] <= start + rule.window_ms]
        if len({e[2] for e in held}) > len({e[2] for e in recent}):
            recent = held
    values = {e[2] for e in recent}
    if len(values) >= rule[threshold]:
        # one alert per key: its id must not depend on which of the key's facts happened to arrive first
        yield Finding(rule.rule_id, tuple((e[0], e[1], e[3]) for e in recent),
                      (fact.key.partition(":")[2], *sorted(values)), rule.severity, text.format(n=len(values)),
                      {feature: float(len(values))}, instance="key")


# LANDING -------------------------------------------------------------------------------------------------------
def _on_landing(fact: Fact, state: KeyState, rules: RuleSet) -> Iterator[Finding]:
    state.landings.append([fact.ms, fact.event_id, fact.post_id])
    here = ((fact.ms, fact.event_id, fact.post_id),)
    rule = rules.rule("maritime_landing")
    persons = fact.adults + fact.minors
    share = fact.minors / persons if persons else 0.0
    reasons = []
    if persons >= rule["min_persons"]:
        reasons.append(f"{persons} people (threshold {rule['min_persons']})")
    if persons >= 10 and share >= rule["min_minor_share"]:
        reasons.append(f"{share:.0%} minors (threshold {rule['min_minor_share']:.0%})")
    if fact.unaccompanied_minors:
        reasons.append(f"{fact.unaccompanied_minors} unaccompanied minor(s)")
    if reasons:
        severity = rule["severity_with_minors"] if (fact.unaccompanied_minors or share >= rule["min_minor_share"]) \
            else rule.severity
        yield Finding("maritime_landing", here, (), severity, f"boat landing at {fact.post_id}: " + "; ".join(reasons),
                      {"persons": float(persons), "minor_share": round(share, 3),
                       "unaccompanied_minors": float(fact.unaccompanied_minors)}, instance=fact.event_id)
    repeat = rules.rule("repeat_vessel")
    if fact.key.startswith("vessel:"):
        recent = within(state.landings, fact.ms, repeat.window_ms)
        if len(recent) >= repeat["min_landings"]:
            days = repeat.window_ms // (24 * HOUR_MS)
            yield Finding("repeat_vessel", tuple((e[0], e[1], e[2]) for e in recent), (), repeat.severity,
                          f"the same vessel landed {len(recent)} times within {days} days "
                          f"(threshold {repeat['min_landings']})", {"landings": float(len(recent))})


def flag_anomaly(fact: Fact, state: KeyState, rules: RuleSet, score: float, threshold: float, model_version: str,
                 why: str, top: dict[str, float]) -> Alert | None:
    """Record an anomaly-score finding for the fact's key (scored in batches by :mod:`agents.anomaly`)."""
    rule = rules.rule("anomaly_score")
    finding = Finding("anomaly_score", ((fact.ms, fact.event_id, fact.post_id),), (fact.key.partition(":")[2],),
                      rule.severity, f"unusual window for this document (score {-score:.3f}, alert beyond "
                      f"{-threshold:.3f}, model {model_version}); stands out on: {why}",
                      {"score": round(-score, 4), "threshold": round(-threshold, 4), **top})
    alert = _emit(fact.key, finding, state, rules)
    state.prune(rules.horizon_ms)
    return alert


_REVISABLE = {"BIOMETRIC": "document_multiple_subjects", "DOCUMENT": "subject_multiple_documents"}
_RULES_BY_ROLE = {"SELF": _on_self, "ESCORT": _on_escort, "SPONSOR": _on_sponsor, "BIOMETRIC": _on_biometric,
                  "DOCUMENT": _on_document, "LANDING": _on_landing}


def run(facts: Iterable[Fact], rules: RuleSet,
        states: dict[str, KeyState] | None = None) -> tuple[dict[str, KeyState], list[Alert]]:
    """Evaluate facts in order over in-memory states (tests, benchmarks, back-testing)."""
    states = {} if states is None else states
    alerts: list[Alert] = []
    for fact in facts:
        state = states.get(fact.key) or KeyState()
        states[fact.key], out = evaluate(fact, state, rules)
        alerts += out
    return states, alerts


def latest(alerts: Iterable[Alert]) -> dict[str, Alert]:
    """The current version of every alert (what the compacted topic and the table keep)."""
    out: dict[str, Alert] = {}
    for alert in alerts:
        if alert.alert_id not in out or _version(alert) >= _version(out[alert.alert_id]):
            out[alert.alert_id] = alert
    return out

