"""The rule engine: one fact and its key's state in, the new state and any alerts out (pure, deterministic).

Alerts are episodes: an alert's id is its rule, its key and its first evidence event (or
its instance), and its version its evidence count, so a pattern instance is one alert that
grows, never repeated; a fact already applied changes nothing.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from agents.trafficking.config import SEVERITY_RANK, RuleSet
from agents.trafficking.facts import Fact
from agents.trafficking.rules import BY_ROLE, REVISABLE, Finding
from agents.trafficking.state import PART_OF, KeyState, logged_order, order, pack, unpack


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


def evaluate(fact: Fact, state: KeyState, rules: RuleSet) -> tuple[KeyState, list[Alert]]:
    """Apply one fact to its key's state and run the rules of its role; the state is updated in place.

    A fact already applied (same event, role and revision) changes nothing; it re-sends the current
    alerts it is evidence of, unchanged. That is what a redelivery after a crash needs: the
    state may have reached the changelog before the alerts reached Kafka.

    Arrival order does not matter: a fact that sorts before the newest of its part (event time,
    then role, event id and revision; :data:`~agents.trafficking.state.PARTS`) makes the part
    evaluate all its facts again in that order (:func:`_reorder`), and only the alerts that differ
    from those already sent go out (an alert that no longer holds is withdrawn). A part's facts are
    kept its longest window plus the rules' allowed lateness, so a fact up to that late behind the
    newest of its part gives exactly the alerts of the facts in order; behind other parts' facts
    (a crossing's dedup decision after the document's next crossing) it is not late at all.
    """
    part = PART_OF[fact.role]
    log, here = state.logs.get(part), order(fact)
    if log and here <= logged_order(log[-1]):
        at = bisect.bisect_left(log, here, key=logged_order)
        if at < len(log) and logged_order(log[at]) == here:
            return state, [_alert(fact.key, ep) for ep in state.episodes.values()
                           if any(e[1] == fact.event_id for e in ep["evidence"])]
        if at == 0 and part in state.bases and state.bases[part].holds(fact):
            return state, []  # beyond the allowed lateness, and applied before: a redelivery
        return _reorder(fact, state, rules)
    return state, _apply(fact, state, rules)


def _apply(fact: Fact, state: KeyState, rules: RuleSet,
           emitted: dict[str, dict[str, Any]] | None = None) -> list[Alert]:
    """The fact after every fact of its part so far (in order): the incremental path.

    ``emitted``: every episode an alert went out for, as it was then (before pruning), by alert id.
    """
    part = PART_OF[fact.role]
    state.logs.setdefault(part, []).append(pack(fact))  # sorts after every logged fact: the log stays in order
    state.max_ms = max(state.max_ms, fact.ms)
    changed = _step(fact, state, rules)
    alerts = []
    for alert_id in changed:
        if emitted is None:
            alerts.append(_alert(fact.key, state.episodes[alert_id]))
        else:
            emitted[alert_id] = state.episodes[alert_id]
    _checkpoint(state, part, state.prune(part, rules), rules)
    return alerts


def _step(fact: Fact, state: KeyState, rules: RuleSet) -> list[str]:
    """The fact's entry and its role's rules on the state: the ids of the episodes that changed."""
    part = PART_OF[fact.role]
    findings = list(BY_ROLE[fact.role](fact, state, rules))
    changed = [a for f in findings if (a := _emit(fact.key, f, state, rules, part)) is not None]
    revisable = REVISABLE.get(fact.role)
    if revisable and not any(f.rule_id == revisable for f in findings):
        changed += [a for a in [_withdraw(revisable, state)] if a is not None]
    return changed


def _checkpoint(state: KeyState, part: str, leaving: list[list[Any]], rules: RuleSet) -> None:
    """Facts leaving the part's log, applied in order to its base (their alerts went out when they came)."""
    if not leaving:
        return
    base = state.bases.setdefault(part, KeyState())
    for entry in leaving:
        fact = unpack(entry)
        _step(fact, base, rules)
        base.max_ms = max(base.max_ms, fact.ms)
        base.prune(part, rules, newest_ms=base.max_ms)


def _reorder(fact: Fact, state: KeyState, rules: RuleSet) -> tuple[KeyState, list[Alert]]:
    """The late fact's part evaluated again from its base, its logged facts and the late one in order.

    Only the alerts that changed go out; one the part no longer finds is withdrawn.
    """
    part = PART_OF[fact.role]
    latest_revision: dict[tuple[str, str], Fact] = {}
    for f in [*(unpack(x) for x in state.logs[part]), fact]:
        held = latest_revision.get((f.event_id, f.role))
        if held is None or f.revision >= held.revision:
            latest_revision[(f.event_id, f.role)] = f
    fresh = state.rewound(part)
    replayed: dict[str, dict[str, Any]] = {}  # every episode the replay produced, as it last was (even pruned)
    for f in sorted(latest_revision.values(), key=order):
        _apply(f, fresh, rules, replayed)
    alerts = []
    for alert_id, ep in sorted(replayed.items()):
        old = state.episodes.get(alert_id)
        if old is not None and _same(old, ep):
            ep["revision"] = old.get("revision", 0)
            continue
        if old is not None:
            ep["revision"] = max(ep.get("revision", 0), old.get("revision", 0) + 1)
        alerts.append(_alert(fact.key, ep))
    for alert_id, old in sorted(state.episodes.items()):
        if alert_id in replayed or old.get("part") != part:
            continue
        if alert_id in fresh.episodes:  # from the base, and no logged fact changed it: as sent
            fresh.episodes[alert_id] = old
            continue
        if old.get("status", "ACTIVE") == "ACTIVE":
            old = {**old, "status": "WITHDRAWN", "revision": old.get("revision", 0) + 1}
            alerts.append(_alert(fact.key, old))
        fresh.episodes[alert_id] = old  # kept until pruned: its copy was sent, a later one must outrank it
    return fresh, alerts


def _names(entry: list[Any], token: str) -> bool:
    fact = unpack(entry)
    return token in (fact.traveller, fact.subject, fact.key.partition(":")[2]) or \
        any(c.token == token for c in fact.companions)


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a.get(k) == b.get(k) for k in ("evidence", "severity", "subjects", "status", "explanation"))


def erase(key: str, state: KeyState, token: str) -> KeyState | None:
    """The state of ``key`` after the person or subject ``token`` was erased: ``None`` (delete) if it is theirs.

    In another key's state (an escort's, a sponsor's, a document's subjects) every entry naming
    the token goes, and the token leaves its episodes' subjects; the evidence counts stay as they were.
    """
    if key.partition(":")[2] == token:
        return None
    for name in ("escorted", "sponsored", "subjects", "documents"):
        setattr(state, name, [e for e in getattr(state, name) if token not in e])  # the token in any field
    state.logs = {part: [x for x in log if not _names(x, token)] for part, log in state.logs.items()}
    for ep in state.episodes.values():
        ep["subjects"] = [s for s in ep["subjects"] if s != token]
    for base in state.bases.values():
        erase(key, base, token)
    return state


def _emit(key: str, finding: Finding, state: KeyState, rules: RuleSet, part: str) -> str | None:
    """Open or grow the finding's episode (of the part whose fact found it; the anomaly model's: none).

    Its alert id when the evidence or the severity changed (an alert is due), else None.
    """
    rule = rules.rule(finding.rule_id)
    slot = f"{finding.rule_id}/{finding.instance}" if finding.instance else finding.rule_id
    ep = state.episodes.get(state.current.get(slot, ""))
    first_ms = finding.evidence[0][0]
    if ep is not None and not finding.instance and first_ms - ep["last_ms"] > rule.window_ms:
        ep = None  # the last episode ended a window ago: this is a new pattern instance
    before: list[list[Any]] = ep["evidence"] if ep is not None else []
    evidence = _merged(before, finding.evidence)
    severity = finding.severity
    if ep is not None:
        if SEVERITY_RANK[ep["severity"]] > SEVERITY_RANK[severity]:
            severity = ep["severity"]
        active = ep.get("status", "ACTIVE") == "ACTIVE"
        if evidence is before and severity == ep["severity"] and active:
            return None
        alert_id = ep["alert_id"]
    else:
        anchor = finding.instance or evidence[0][1]
        alert_id = "A" + hashlib.sha256(f"{finding.rule_id}\x1f{key}\x1f{anchor}".encode()).hexdigest()[:31]
    sent = state.episodes.get(alert_id)  # a copy went out before (withdrawn since): the new one must outrank it
    state.current[slot] = alert_id
    state.episodes[alert_id] = {
        "alert_id": alert_id, "rule_id": finding.rule_id, "rule_version": rule.version,
        "rules_version": rules.version, "indicators": list(rule.indicators), "severity": severity,
        "first_ms": evidence[0][0], "last_ms": evidence[-1][0], "evidence": evidence,
        "subjects": sorted(set(finding.subjects) | set(ep["subjects"] if ep else ())),
        "explanation": finding.explanation, "features": finding.features,
        "status": "ACTIVE", "revision": (sent.get("revision", 0) + 1) if sent else 0, "part": part,
    }
    return alert_id


def _merged(before: list[list[Any]], found: Iterable[tuple[int, str, str]]) -> list[list[Any]]:
    """An episode's evidence (in order) with a finding's: ``before`` itself if that adds nothing.

    Only the part from the finding's oldest item on is compared: a growing episode costs its window, not its age.
    """
    new = set(found)
    cut = bisect.bisect_left(before, min(new)[0], key=_first)
    tail = {(ms, event, post) for ms, event, post in before[cut:]}
    if new <= tail:
        return before
    return before[:cut] + [list(e) for e in sorted(tail | new)]


def _first(item: list[Any]) -> Any:
    return item[0]


def _withdraw(rule_id: str, state: KeyState) -> str | None:
    """A per-key finding that no longer holds (its dedup decisions were revised): its alert id, withdrawn."""
    ep = state.episodes.get(state.current.get(f"{rule_id}/key", ""))
    if ep is None or ep.get("status", "ACTIVE") != "ACTIVE":
        return None
    ep["status"], ep["revision"] = "WITHDRAWN", ep.get("revision", 0) + 1
    return str(ep["alert_id"])


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


def flag_anomaly(fact: Fact, state: KeyState, rules: RuleSet, score: float, threshold: float, model_version: str,
                 why: str, top: dict[str, float]) -> Alert | None:
    """Record an anomaly-score finding for the fact's key (scored in batches by :mod:`agents.anomaly`)."""
    rule = rules.anomaly_score
    finding = Finding("anomaly_score", ((fact.ms, fact.event_id, fact.post_id),), (fact.key.partition(":")[2],),
                      rule.severity, f"unusual window for this document (score {-score:.3f}, alert beyond "
                      f"{-threshold:.3f}, model {model_version}); stands out on: {why}",
                      {"score": round(-score, 4), "threshold": round(-threshold, 4), **top})
    alert_id = _emit(fact.key, finding, state, rules, "")
    alert = _alert(fact.key, state.episodes[alert_id]) if alert_id else None
    state.prune("", rules)
    return alert


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

