"""The rules file (``rules.toml``, versioned): each rule's settings, typed and checked when the file is loaded."""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from schemas.errors import LintasError

RULES_FILE = Path(__file__).resolve().parent / "rules.toml"
HOUR_MS = 3_600_000
SEVERITY_RANK = {"LOW": 0, "MEDIUM": 1, "HIGH": 2}
Severity = Literal["LOW", "MEDIUM", "HIGH"]


class RulesError(LintasError):
    """The rules file is missing, unreadable or incomplete; names the rule and key."""

    code = "rules_invalid"


class Params(BaseModel):
    """A rule's own parameters (thresholds, code lists); the keys every rule has are on :class:`Rule`."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class EscortFanout(Params):
    """``escort_fanout``: travellers not declared as close family with one escort document."""

    min_travellers: int
    family: frozenset[str]
    severity_with_minor: Severity


class SponsorFanout(Params):
    """``sponsor_fanout``: travellers declaring one unregistered sponsor of these kinds."""

    min_travellers: int
    kinds: frozenset[str]


class MinorUnrelatedAdult(Params):
    """``minor_unrelated_adult``: who counts as a guardian."""

    guardians: frozenset[str]


class NoParams(Params):
    """A rule with no parameters of its own (``unaccompanied_minor``)."""


class Shuttling(Params):
    """``shuttling``: exits while escorting changing companions on separate occasions."""

    min_exits: int
    min_companions: int
    occasion_gap_hours: float
    exempt_visas: frozenset[str]
    exempt_purposes: frozenset[str]


class MultipleSubjects(Params):
    """``document_multiple_subjects``: biometric subjects seen with one document."""

    min_subjects: int


class MultipleDocuments(Params):
    """``subject_multiple_documents``: documents of one biometric subject."""

    min_documents: int


class ImpossibleTravel(Params):
    """``impossible_travel``: the fastest journey between two posts."""

    speed_kmh: float
    minimum_hours: float


class WorkExit(Params):
    """``non_procedural_work_exit``: where and for whom a work exit needs a placement id."""

    origin_countries: frozenset[str]
    nationalities: frozenset[str]


class TouristCorridor(Params):
    """``tourist_exit_recruitment_corridor``: the corridor posts and who is looked at there."""

    posts: frozenset[str]
    nationalities: frozenset[str]
    purposes: frozenset[str]
    visas: frozenset[str]
    age_bands: frozenset[str]


class MaritimeLanding(Params):
    """``maritime_landing``: how many people or what share of minors makes a landing worth a look."""

    min_persons: int
    min_minor_share: float
    severity_with_minors: Severity


class RepeatVessel(Params):
    """``repeat_vessel``: landings of one vessel."""

    min_landings: int


class AnomalyScore(Params):
    """``anomaly_score``: the IsolationForest's alert rate and how many features explain a score."""

    top_features: int
    alert_rate: float


class Leg(BaseModel):
    """One leg of a route: a crossing in this direction at one of these posts or countries."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    direction: Literal["ENTRY", "EXIT"]
    posts: frozenset[str] = frozenset()
    countries: frozenset[str] = frozenset()
    destinations: frozenset[str] | None = None  # None: any declared destination

    @model_validator(mode="after")
    def _somewhere(self) -> Leg:
        if not (self.posts or self.countries):
            raise ValueError("a leg needs posts or countries")
        return self


class Route(Params):
    """``route.<name>``: legs crossed in order, with these purposes, or a destination declared at the first."""

    legs: tuple[Leg, ...]
    purposes: frozenset[str]
    destinations: frozenset[str] = frozenset()


P = TypeVar("P", bound=Params)


@dataclass(frozen=True)
class Rule(Generic[P]):
    """One rule's settings from the rules file: what every rule has, and its own typed ``params``."""

    rule_id: str
    version: int
    severity: str
    indicators: tuple[str, ...]
    window_ms: int
    params: P


@dataclass(frozen=True)
class RuleSet:
    """Every rule and route of one rules file, and the file's version."""

    version: str
    escort_fanout: Rule[EscortFanout]
    sponsor_fanout: Rule[SponsorFanout]
    minor_unrelated_adult: Rule[MinorUnrelatedAdult]
    unaccompanied_minor: Rule[NoParams]
    shuttling: Rule[Shuttling]
    document_multiple_subjects: Rule[MultipleSubjects]
    subject_multiple_documents: Rule[MultipleDocuments]
    impossible_travel: Rule[ImpossibleTravel]
    non_procedural_work_exit: Rule[WorkExit]
    tourist_exit_recruitment_corridor: Rule[TouristCorridor]
    maritime_landing: Rule[MaritimeLanding]
    repeat_vessel: Rule[RepeatVessel]
    anomaly_score: Rule[AnomalyScore]
    routes: tuple[Rule[Route], ...]
    lateness_ms: int = 72 * HOUR_MS  # facts this late (event time) still give exactly the in-order alerts

    @functools.cached_property
    def rules(self) -> dict[str, Rule[Any]]:
        """The rules by id (routes apart)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name in PARAMS}

    @functools.cached_property
    def horizon_ms(self) -> int:
        """How long any rule looks back."""
        return max(r.window_ms for r in [*self.rules.values(), *self.routes])

    @functools.cached_property
    def horizons(self) -> dict[str, int]:
        """How long each part of a key's state is looked back on (:data:`READS`): older evidence there is dropped."""
        out = dict.fromkeys(READS.values(), 0)
        for rule_id, rule in [*self.rules.items(), *((r.rule_id, r) for r in self.routes)]:
            part = READS[rule_id if rule_id in READS else "route"]
            out[part] = max(out[part], rule.window_ms)
        return out

    def rule(self, rule_id: str) -> Rule[Any]:
        """The rule (or route) with that id."""
        if rule_id in PARAMS:
            return getattr(self, rule_id)  # type: ignore[no-any-return]
        return next(r for r in self.routes if r.rule_id == rule_id)


# Every rule a rules file must configure, and the type of its parameters.
PARAMS: dict[str, type[Params]] = {
    "escort_fanout": EscortFanout, "sponsor_fanout": SponsorFanout, "minor_unrelated_adult": MinorUnrelatedAdult,
    "unaccompanied_minor": NoParams, "shuttling": Shuttling, "document_multiple_subjects": MultipleSubjects,
    "subject_multiple_documents": MultipleDocuments, "impossible_travel": ImpossibleTravel,
    "non_procedural_work_exit": WorkExit, "tourist_exit_recruitment_corridor": TouristCorridor,
    "maritime_landing": MaritimeLanding, "repeat_vessel": RepeatVessel, "anomaly_score": AnomalyScore,
}
WINDOWLESS = {"maritime_landing"}  # judged on one landing
# The part of a key's state (agents.trafficking.state.PARTS) each rule reads; every route reads the travel part, and
# so do the anomaly model's features (agents.anomaly). A part keeps its evidence its rules' longest window.
READS = {"escort_fanout": "travel", "minor_unrelated_adult": "travel", "unaccompanied_minor": "travel",
         "shuttling": "travel", "impossible_travel": "travel", "non_procedural_work_exit": "travel",
         "tourist_exit_recruitment_corridor": "travel", "anomaly_score": "travel", "route": "travel",
         "sponsor_fanout": "sponsored", "document_multiple_subjects": "subjects",
         "subject_multiple_documents": "documents", "maritime_landing": "landings", "repeat_vessel": "landings"}


def _rule(rule_id: str, raw: dict[str, Any], params: type[P]) -> Rule[P]:
    common = ("version", "severity", "indicators") + (() if rule_id in WINDOWLESS else ("window_hours",))
    for key in common:
        if key not in raw:
            raise RulesError(f"rule {rule_id}: missing key {key!r}")
    if raw["severity"] not in SEVERITY_RANK:
        raise RulesError(f"rule {rule_id}: severity must be one of {sorted(SEVERITY_RANK)}")
    if not raw["indicators"]:
        raise RulesError(f"rule {rule_id}: indicators must cite at least one published indicator")
    try:
        typed = params.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        if first["type"] == "missing":
            raise RulesError(f"rule {rule_id}: missing key {where!r}") from None
        raise RulesError(f"rule {rule_id}: {where}: {first['msg']}") from None
    return Rule(rule_id, int(raw["version"]), raw["severity"], tuple(raw["indicators"]),
                int(float(raw.get("window_hours", 0)) * HOUR_MS), typed)


def load_rules(path: Path | None = None) -> RuleSet:
    """Parse and check a rules file (default: the one shipped in this package)."""
    path = path or RULES_FILE
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise RulesError(f"rules file {path}: {err}") from err
    if not raw.get("version"):
        raise RulesError(f"rules file {path}: missing top-level 'version'")
    configured = raw.get("rules", {})
    unknown = sorted(set(configured) - set(PARAMS))
    if unknown:
        raise RulesError(f"rules file {path}: unknown rule(s) {unknown}")
    rules: dict[str, Any] = {rid: _rule(rid, configured.get(rid, {}), params) for rid, params in PARAMS.items()}
    routes = tuple(_rule(f"route.{name}", route, Route) for name, route in raw.get("routes", {}).items())
    lateness = raw.get("allowed_lateness_hours", 72)
    if not isinstance(lateness, int | float) or lateness < 0:
        raise RulesError(f"rules file {path}: allowed_lateness_hours must be a number of hours >= 0")
    return RuleSet(version=str(raw["version"]), routes=routes, lateness_ms=int(lateness * HOUR_MS), **rules)
