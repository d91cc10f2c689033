"""Cases for officers' review: a key's indicators combined, and the case's lifecycle (pure, deterministic).

Rules raise *indicators* (the alerts of :mod:`agents.trafficking`, :mod:`agents.watchlist`,
:mod:`agents.overstay`); no single one proves anything (UNODC). A **case** per key (a person's
document, an escort, a sponsor, a biometric subject, a vessel) collects every indicator of that key
and *opens* when their combined evidence passes the review policy (``review_policy.toml``,
versioned like the rules):

* each distinct rule counts once, with the weight of its severity (or its own weight);
* a HIGH indicator always opens the case (a watchlist hit, a confirmed multiple identity, a minor
  with an unrelated adult): those are never left to a budget;
* LOW indicators alone never open one, however many;
* otherwise the case opens when the score reaches the policy's threshold, which
  ``lintas review calibrate`` sets from simulated traffic so that cases stay within the review
  capacity (``review_budget_per_10k`` cases per 10,000 crossings).

A case's content is a function of the latest copy of each of its indicators, whatever order they
arrived in; its status is what officers made of it (:func:`decide`): OPEN → IN_REVIEW →
CONFIRMED / DISMISSED (with a reason) / REFERRED (to a pathway). A referral is to protection,
assistance or investigation, following UNHCR's Screening and Referral Toolkit; it never triggers
refusal, detention or return. New evidence after a dismissal reopens the case; a case whose evidence
fell away before anyone decided is WITHDRAWN. A decision already applied (same id) changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.errors import InvalidMessage, LintasError

POLICY_FILE = Path(__file__).resolve().parent / "review_policy.toml"
SEVERITY_RANK = {"LOW": 0, "MEDIUM": 1, "HIGH": 2}
STATUSES = ("OPEN", "IN_REVIEW", "CONFIRMED", "DISMISSED", "REFERRED", "WITHDRAWN")
OPEN_STATUSES = ("OPEN", "IN_REVIEW")
CLOSED_STATUSES = ("CONFIRMED", "DISMISSED", "REFERRED")

# Referral pathways (UNHCR / IOM Screening and Referral Toolkit, Bali Process RSO): who helps next.
PATHWAYS = {
    "CHILD_PROTECTION": "Child protection services (a child at risk, unaccompanied or separated)",
    "VICTIM_ASSISTANCE": "Assistance for victims of trafficking (shelter, recovery, legal aid)",
    "INTERNATIONAL_PROTECTION": "International protection (asylum: UNHCR or the national procedure)",
    "HEALTH": "Health care (urgent medical or psychosocial needs)",
    "LAW_ENFORCEMENT": "Law enforcement (investigation of the escort, sponsor, recruiter or vessel)",
}
DISMISS_REASONS = {
    "EXPLAINED_FAMILY": "The companions are family or legal guardians (documents seen)",
    "EXPLAINED_WORK": "A licensed placement or registered sponsor was shown",
    "EXPLAINED_TRAVEL": "Ordinary travel, explained at interview",
    "DATA_ERROR": "A data-entry or matching error",
    "DUPLICATE": "Handled in another case",
    "OTHER": "Other (recorded in the officer's notes outside Lintas)",
}
# action → {status before: status after}
TRANSITIONS: dict[str, dict[str, str]] = {
    "START_REVIEW": {"OPEN": "IN_REVIEW"},
    "RELEASE": {"IN_REVIEW": "OPEN"},
    "CONFIRM": {"OPEN": "CONFIRMED", "IN_REVIEW": "CONFIRMED"},
    "DISMISS": {"OPEN": "DISMISSED", "IN_REVIEW": "DISMISSED"},
    "REFER": {"OPEN": "REFERRED", "IN_REVIEW": "REFERRED", "CONFIRMED": "REFERRED", "REFERRED": "REFERRED"},
}
LINK_ACTIONS = {"CONFIRM_LINK": "CONFIRM", "REJECT_LINK": "REJECT"}


class ReviewPolicyError(LintasError):
    """The review policy file is missing, unreadable or inconsistent; names the key."""

    code = "review_policy_invalid"


class CasePolicy(BaseModel):
    """How indicators combine into a case (``review_policy.toml``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str
    threshold: float = Field(gt=0, description="Score at which a case with a MEDIUM or HIGH indicator opens.")
    budget_per_10k: float = Field(gt=0, description="The review capacity the threshold was calibrated to.")
    calibrated_on: str = ""
    severity_weights: dict[str, float]
    rule_weights: dict[str, float] = Field(default_factory=dict)
    always_open: frozenset[str] = frozenset({"HIGH"})

    def weight(self, rule_id: str, severity: str) -> float:
        """One distinct rule's contribution to its case's score."""
        return self.rule_weights.get(rule_id, self.severity_weights[severity])


def load_policy(path: Path | None = None) -> CasePolicy:
    """Parse and check a review policy file (default: the one shipped in this package)."""
    path = path or POLICY_FILE
    try:
        raw = tomllib.loads(path.read_text())
        policy = CasePolicy(**raw)
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ReviewPolicyError(f"review policy {path}: {err}") from err
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ReviewPolicyError(f"review policy {path}: {where}: {first['msg']}") from err
    missing = sorted(set(SEVERITY_RANK) - set(policy.severity_weights))
    if missing:
        raise ReviewPolicyError(f"review policy {path}: severity_weights: missing {missing}")
    return policy


def case_key(key_kind: str, key_token: str) -> str:
    """The key a case collects indicators for (``doc:<token>``, ``vessel:<token>``, ...)."""
    return f"{key_kind}:{key_token}"


def case_id(key: str) -> str:
    """A case's id: derived from its key, so every indicator of the key finds the same case."""
    return "C" + hashlib.sha256(f"case\x1f{key}".encode()).hexdigest()[:31]


def allowed_actions(status: str) -> tuple[str, ...]:
    """The case actions an officer may take in this status."""
    return tuple(action for action, moves in TRANSITIONS.items() if status in moves)


@dataclass(frozen=True)
class Indicator:
    """One alert, as evidence of its key's case (its latest copy wins: ``version``)."""

    alert_id: str
    rule_id: str
    family: str
    severity: str
    status: str
    version: int
    first_ms: int
    last_ms: int
    post_ids: tuple[str, ...]
    subjects: tuple[str, ...]
    evidence_event_ids: tuple[str, ...]
    explanation: str

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> Indicator:
        """From an ``alerts`` row (what :meth:`agents.trafficking.engine.Alert.row` makes)."""
        return cls(row["alert_id"], row["rule_id"], row["family"], row["severity"], row.get("status", "ACTIVE"),
                   int(row["version"]), _ms(row["first_seen"]), _ms(row["last_seen"]), tuple(row["post_ids"]),
                   tuple(row["subjects"]), tuple(row["evidence_event_ids"]), row["explanation"])

    @property
    def active(self) -> bool:
        """Not withdrawn (its dedup decisions were revised, or it was superseded)."""
        return self.status == "ACTIVE"


@dataclass
class CaseState:
    """Everything remembered about one case: its indicators, whether it opened, and officers' decisions."""

    key: str = ""
    indicators: dict[str, Indicator] = field(default_factory=dict)
    status: str = ""  # "": never opened
    opened_ms: int = 0
    reviewed: list[str] = field(default_factory=list)  # indicator ids the last closing decision saw
    reviewer_token: str = ""
    reason_code: str = ""
    pathways: list[str] = field(default_factory=list)
    decided_ms: int = 0
    reopened: int = 0
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)  # decision id → its case_decisions row
    version: int = 0

    def to_bytes(self) -> bytes:
        """JSON for the changelog-backed table."""
        return json.dumps(asdict(self), separators=(",", ":"), default=str).encode()

    @classmethod
    def from_bytes(cls, data: bytes | None) -> CaseState:
        """The state a table holds (empty for ``None``)."""
        if not data:
            return cls()
        raw = json.loads(data)
        raw["indicators"] = {k: _indicator(v) for k, v in raw["indicators"].items()}
        return cls(**raw)


@dataclass(frozen=True)
class Assessment:
    """What a case's active indicators add up to."""

    score: float
    severity: str
    opens: bool
    rules: tuple[str, ...]


def assess(indicators: Iterable[Indicator], policy: CasePolicy) -> Assessment:
    """Combine indicators: each distinct rule once at its highest severity; HIGH always opens, LOW alone never."""
    best: dict[str, str] = {}
    for ind in indicators:
        if ind.active and SEVERITY_RANK[ind.severity] >= SEVERITY_RANK[best.get(ind.rule_id, "LOW")]:
            best[ind.rule_id] = ind.severity
    if not best:
        return Assessment(0.0, "LOW", False, ())
    score = round(sum(policy.weight(rule, sev) for rule, sev in best.items()), 6)
    severity = max(best.values(), key=SEVERITY_RANK.__getitem__)
    opens = severity in policy.always_open or (severity != "LOW" and score >= policy.threshold)
    return Assessment(score, severity, opens, tuple(sorted(best)))


def add_indicator(state: CaseState, ind: Indicator, key: str, policy: CasePolicy) -> bool:
    """Apply one indicator (a new alert or a newer copy); whether the case changed. Updates ``state`` in place."""
    held = state.indicators.get(ind.alert_id)
    if held is not None and held.version >= ind.version:
        return False  # a replay, or an older copy arriving late
    state.key = key
    state.indicators[ind.alert_id] = ind
    _settle(state, policy)
    state.version += 1
    return True


def _settle(state: CaseState, policy: CasePolicy) -> None:
    """The status the evidence now gives, where officers have not decided otherwise."""
    verdict = assess(state.indicators.values(), policy)
    active = [i for i in state.indicators.values() if i.active]
    if state.status in ("", "WITHDRAWN") and verdict.opens:
        state.status = "OPEN"
        state.opened_ms = min(i.first_ms for i in active)
    elif state.status in OPEN_STATUSES and not verdict.opens and not state.decisions:
        state.status = "WITHDRAWN"  # the evidence fell away before anyone looked
    elif state.status == "DISMISSED" and verdict.opens and {i.alert_id for i in active} - set(state.reviewed):
        state.status = "OPEN"  # new evidence since the dismissal: officers look again
        state.reopened += 1


def decide(state: CaseState, decision: Mapping[str, Any], policy: CasePolicy, key_id: str,
           now: datetime) -> dict[str, Any] | None:
    """Apply one checked decision; its ``case_decisions`` row, or ``None`` for a replay (the same decision id).

    ``decision``: ``decision_id``, ``action``, ``reason_code``, ``pathway``, ``officer_token``,
    ``officer_role``, ``post_id``, ``decided_at`` (aware datetime). Raises :class:`InvalidMessage`
    when the case does not exist or the action is not allowed in its status.
    """
    if decision["decision_id"] in state.decisions:
        return None
    if not state.status:
        raise InvalidMessage("unknown_case", "target_id", "no case with this id has opened")
    action = decision["action"]
    moves = TRANSITIONS.get(action)
    if moves is None:
        raise InvalidMessage("not_a_case_action", "action", "not an action on a case")
    if state.status not in moves:
        raise InvalidMessage("not_allowed", "action", f"{action} is not allowed on a {state.status} case")
    before, after = state.status, moves[state.status]
    state.status = after
    decided_ms = _ms(decision["decided_at"])
    if after in CLOSED_STATUSES:
        state.reviewed = sorted(i.alert_id for i in state.indicators.values() if i.active)
        state.reviewer_token, state.decided_ms = decision["officer_token"], decided_ms
        if action == "DISMISS":
            state.reason_code = decision.get("reason_code") or ""
        if action == "REFER" and decision.get("pathway") not in state.pathways:
            state.pathways = sorted([*state.pathways, decision["pathway"]])
    elif action == "START_REVIEW":
        state.reviewer_token = decision["officer_token"]
    verdict = assess(state.indicators.values(), policy)
    row = {
        "decision_id": decision["decision_id"], "case_id": case_id(state.key), "action": action,
        "status_before": before, "status_after": after, "reason_code": decision.get("reason_code") or "",
        "pathway": decision.get("pathway") or "", "officer_token": decision["officer_token"],
        "officer_role": decision["officer_role"], "post_id": decision.get("post_id") or "",
        "rules": list(verdict.rules),
        "indicator_ids": sorted(i.alert_id for i in state.indicators.values() if i.active),
        "severity": verdict.severity, "score": verdict.score, "decided_at": _dt(decided_ms), "applied_at": now,
        "key_id": key_id,
    }
    state.decisions[decision["decision_id"]] = {**row, "decided_at": decided_ms, "applied_at": _ms(now)}
    state.version += 1
    return row


def check_form(action: str, reason_code: str | None, pathway: str | None) -> None:
    """A decision's own fields, before it is sent or applied: :class:`InvalidMessage` naming the field."""
    if action not in TRANSITIONS and action not in LINK_ACTIONS:
        raise InvalidMessage("unknown_action", "action", "not a review action")
    if action == "DISMISS" and reason_code not in DISMISS_REASONS:
        raise InvalidMessage("missing_reason", "reason_code", "a dismissal needs one of the policy's reason codes")
    if action == "REFER" and pathway not in PATHWAYS:
        raise InvalidMessage("missing_pathway", "pathway", "a referral needs one of the referral pathways")
    if action != "DISMISS" and reason_code:
        raise InvalidMessage("unexpected_reason", "reason_code", "only a dismissal carries a reason code")
    if action != "REFER" and pathway:
        raise InvalidMessage("unexpected_pathway", "pathway", "only a referral carries a pathway")


def case_row(state: CaseState, policy: CasePolicy, key_id: str, now: datetime) -> dict[str, Any] | None:
    """The ``cases`` row of a case that has opened (``None`` before that)."""
    if not state.status:
        return None
    kind, _, token = state.key.partition(":")
    active = sorted((i for i in state.indicators.values() if i.active),
                    key=lambda i: (-SEVERITY_RANK[i.severity], i.first_ms, i.alert_id))
    verdict = assess(active, policy)
    shown = active or sorted(state.indicators.values(), key=lambda i: (i.first_ms, i.alert_id))
    return {
        "case_id": case_id(state.key), "key_kind": kind, "key_token": token, "status": state.status,
        "severity": verdict.severity, "score": verdict.score, "threshold": policy.threshold,
        "policy_version": policy.version, "indicator_ids": [i.alert_id for i in active],
        "rules": list(verdict.rules), "families": sorted({i.family for i in active}),
        "post_ids": sorted({p for i in active for p in i.post_ids}),
        "subjects": sorted({s for i in active for s in i.subjects}),
        "evidence_event_ids": _unique(e for i in active for e in i.evidence_event_ids),
        "summary": "\n".join(f"[{i.severity}] {i.rule_id}: {i.explanation}" for i in active),
        "first_seen": _dt(min(i.first_ms for i in shown)), "last_seen": _dt(max(i.last_ms for i in shown)),
        "opened_at": _dt(state.opened_ms), "reviewer_token": state.reviewer_token, "reason_code": state.reason_code,
        "pathways": list(state.pathways), "decided_at": _dt(state.decided_ms) if state.decided_ms else None,
        "reopened": state.reopened, "decisions": len(state.decisions), "key_id": key_id, "version": state.version,
        "updated_at": now,
    }


# -- calibration and measurement over many keys (bench, lintas review calibrate) ----------------------------------
def cases_of(indicators: Iterable[Indicator], key_of: Mapping[str, str], policy: CasePolicy) -> dict[str, Assessment]:
    """Every key's assessment from a set of indicators (the latest copies), keyed by case key."""
    by_key: dict[str, list[Indicator]] = {}
    for ind in indicators:
        by_key.setdefault(key_of[ind.alert_id], []).append(ind)
    return {key: assess(inds, policy) for key, inds in by_key.items()}


def calibrate(scores: Sequence[tuple[float, str]], crossings: int, budget_per_10k: float,
              policy: CasePolicy) -> float:
    """The lowest threshold keeping cases within the budget, from every key's (score, highest severity).

    HIGH cases open whatever the threshold, so they count against the budget first; the threshold
    is never below a single MEDIUM indicator's weight (a lone LOW never opens).
    """
    allowed = budget_per_10k * crossings / 10_000
    always = sum(1 for _, sev in scores if sev in policy.always_open)
    candidates = sorted({s for s, sev in scores if sev == "MEDIUM"} | {policy.severity_weights["MEDIUM"]})
    floor = policy.severity_weights["MEDIUM"]
    for t in (c for c in candidates if c >= floor):
        if always + sum(1 for s, sev in scores if sev == "MEDIUM" and s >= t) <= allowed:
            return t
    return max(candidates) + 1.0 if candidates else floor


def _ms(value: Any) -> int:
    if isinstance(value, int):
        return value
    dt = value if value.tzinfo else value.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


# -- the case agent's commands (review.cases, keyed by case id; internal JSON, tokens and codes only) -------------
def indicator_command(alert_row: Mapping[str, Any]) -> tuple[str, bytes]:
    """An alert as its case's evidence: (case id, command bytes)."""
    ind = Indicator.of_row(alert_row)
    key = case_key(alert_row["key_kind"], alert_row["key_token"])
    return case_id(key), json.dumps({"kind": "INDICATOR", "key": key, "indicator": asdict(ind)},
                                    separators=(",", ":")).encode()


def decision_command(decision: Mapping[str, Any], officer_token: str) -> bytes:
    """A case decision whose form was checked, with the officer's token instead of the account."""
    decided = decision["decided_at"]
    return json.dumps({"kind": "DECIDE", "decision": {
        "decision_id": str(decision["decision_id"]), "action": decision["action"],
        "reason_code": decision.get("reason_code"), "pathway": decision.get("pathway"),
        "officer_token": officer_token, "officer_role": decision["officer_role"],
        "post_id": decision.get("post_id"), "decided_at": decided if isinstance(decided, int) else _ms(decided),
    }}, separators=(",", ":")).encode()


def forget_command(tokens: Sequence[str]) -> bytes:
    """Forget a person in one case: the whole case if it is theirs, else their token among its subjects."""
    return json.dumps({"kind": "ERASE", "tokens": sorted(tokens)}, separators=(",", ":")).encode()


def forget(state: CaseState, tokens: Sequence[str]) -> CaseState | None:
    """The case after erasing the person with these tokens: ``None`` (delete) if it is their own case."""
    if state.key.partition(":")[2] in tokens:
        return None
    gone = set(tokens)
    state.indicators = {k: replace(i, subjects=tuple(s for s in i.subjects if s not in gone))
                        for k, i in state.indicators.items()}
    state.version += 1
    return state


def read_command(data: bytes) -> dict[str, Any]:
    """A command off review.cases; an INDICATOR's ``indicator`` as an :class:`Indicator`."""
    cmd: dict[str, Any] = json.loads(data)
    if cmd["kind"] == "INDICATOR":
        cmd["indicator"] = _indicator(cmd["indicator"])
    return cmd


def _indicator(raw: dict[str, Any]) -> Indicator:
    return Indicator(**{**raw, **{n: tuple(raw[n]) for n in ("post_ids", "subjects", "evidence_event_ids")}})
