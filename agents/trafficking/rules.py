"""The rules: what each role's fact adds to its key's state, and what the rules find there.

One function per role (``BY_ROLE``); each appends the fact's entry to the state and yields
:class:`Finding` s. Parameters come typed from the rules file (:mod:`agents.trafficking.config`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from agents.trafficking.config import HOUR_MS, Route, Rule, RuleSet
from agents.trafficking.facts import Fact
from agents.trafficking.state import (
    Crossing,
    Document,
    Escorted,
    KeyState,
    Landing,
    Sponsored,
    Subject,
    add,
    within,
)
from schemas.geography import POSTS, distance_km

R = TypeVar("R", Subject, Document)


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



# SELF: the key's own crossing -------------------------------------------------------------------------------------
def _on_self(fact: Fact, state: KeyState, rules: RuleSet) -> Iterator[Finding]:
    add(state.crossings, Crossing(fact.ms, fact.event_id, fact.post_id, fact.post_country, fact.direction,
                                 fact.travel_purpose, fact.visa_type, fact.destination_country))
    here = ((fact.ms, fact.event_id, fact.post_id),)
    me = fact.key.partition(":")[2]
    if fact.is_minor:
        guardians = rules.minor_unrelated_adult.params.guardians
        others = [c for c in fact.companions if c.relationship not in guardians]
        if not fact.companions:
            yield Finding("unaccompanied_minor", here, (me,), rules.unaccompanied_minor.severity,
                          f"minor ({fact.age_band}) crossing with no companion declared", {"companions": 0.0})
        elif len(others) == len(fact.companions):
            rels = ", ".join(sorted({c.relationship for c in others}))
            yield Finding("minor_unrelated_adult", here, (me, *sorted(c.token for c in others)),
                          rules.minor_unrelated_adult.severity,
                          f"minor ({fact.age_band}) crossing with {len(others)} companion(s) of whom none is a "
                          f"parent or legal guardian (declared: {rels})",
                          {"companions": float(len(others)), "escorts": float(sum(c.is_escort for c in others))})
    if fact.direction == "EXIT":
        yield from _labour_exit(fact, here, me, rules)
    yield from _impossible_travel(fact, state, me, rules)
    shuttling = rules.shuttling.params
    if fact.visa_type not in shuttling.exempt_visas and fact.travel_purpose not in shuttling.exempt_purposes:
        yield from _shuttling(fact.ms, state, me, rules)
    for route in rules.routes:
        yield from _route(route, fact, state, me)


def _labour_exit(fact: Fact, here: tuple[tuple[int, str, str], ...], me: str, rules: RuleSet) -> Iterator[Finding]:
    work = rules.non_procedural_work_exit
    if (fact.travel_purpose == "WORK" and not fact.has_placement and fact.post_country in work.params.origin_countries
            and fact.nationality in work.params.nationalities):
        sponsor = f"{fact.sponsor_kind.lower()} sponsor" if fact.sponsor_kind else "no sponsor"
        yield Finding("non_procedural_work_exit", here, (me,), work.severity,
                      f"work exit from {fact.post_country} without a placement id ({sponsor}, "
                      f"{'registered' if fact.sponsor_registered else 'unregistered'})",
                      {"has_placement": 0.0, "sponsor_registered": float(fact.sponsor_registered)})
    corridor = rules.tourist_exit_recruitment_corridor
    c = corridor.params
    if (fact.post_id in c.posts and fact.nationality in c.nationalities and fact.travel_purpose in c.purposes
            and fact.visa_type in c.visas and fact.age_band in c.age_bands and not fact.has_placement):
        yield Finding("tourist_exit_recruitment_corridor", here, (me,), corridor.severity,
                      f"{fact.travel_purpose.lower()} exit of a working-age ({fact.age_band}) national through "
                      f"{fact.post_id}, a known non-procedural placement corridor",
                      {"working_age": 1.0})


def _impossible_travel(fact: Fact, state: KeyState, me: str, rules: RuleSet) -> Iterator[Finding]:
    rule = rules.impossible_travel
    for e in within(state.crossings, fact.ms + rule.window_ms, 2 * rule.window_ms):
        if e.event == fact.event_id or e.post == fact.post_id:
            continue
        needed = travel_hours(e.post, fact.post_id, rule.params.speed_kmh, rule.params.minimum_hours)
        gap = abs(fact.ms - e.ms) / HOUR_MS
        if needed is not None and gap < needed:
            first, second = sorted([(e.ms, e.event, e.post), (fact.ms, fact.event_id, fact.post_id)])
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
    rule = rules.shuttling
    p = rule.params
    exits = [e for e in within(state.crossings, now_ms, rule.window_ms)
             if e.direction == "EXIT" and e.visa not in p.exempt_visas and e.purpose not in p.exempt_purposes]
    escorted = within(state.escorted, now_ms, rule.window_ms)
    occasions = escort_occasions(escorted, int(p.occasion_gap_hours * HOUR_MS))
    companions = {e.traveller for e in escorted}
    enough = min(occasions, len(companions)) >= p.min_companions
    if len(exits) >= p.min_exits and enough:
        evidence = tuple((e.ms, e.event, e.post) for e in exits) + tuple((e.ms, e.event, e.post) for e in escorted)
        hours = rule.window_ms // HOUR_MS
        yield Finding("shuttling", evidence, (me, *sorted(companions)), rule.severity,
                      f"{len(exits)} exits within {hours} h while escorting {len(companions)} different "
                      f"companions on {occasions} occasions "
                      f"(thresholds {p.min_exits} and {p.min_companions})",
                      {"exits": float(len(exits)), "companions": float(len(companions)), "occasions": float(occasions),
                       "window_hours": float(hours)})


def escort_occasions(escorted: Sequence[Escorted], gap_ms: int) -> int:
    """Separate escorting trips: escorted crossings at least ``gap_ms`` apart."""
    count, last = 0, None
    for e in sorted(escorted, key=lambda e: e[0]):
        if last is None or e[0] - last >= gap_ms:
            count += 1
            last = e[0]
    return count


def _route(route: Rule[Route], fact: Fact, state: KeyState, me: str) -> Iterator[Finding]:
    crossings = within(state.crossings, fact.ms, route.window_ms)
    matched: list[Crossing] = []
    legs = route.params.legs
    for e in crossings:  # greedy in-order match of the legs
        if len(matched) == len(legs):
            break
        leg = legs[len(matched)]
        if (e.direction == leg.direction and (e.post in leg.posts or e.country in leg.countries)
                and e.purpose in route.params.purposes
                and (leg.destinations is None or e.destination in leg.destinations)):
            matched.append(e)
    if not matched or fact.event_id not in {e.event for e in matched}:
        return
    # one-way onward travel declared at the first leg, or the whole route travelled
    declared = [matched[0].destination] if matched[0].destination in route.params.destinations else []
    if not (declared or len(matched) == len(legs)):
        return
    name = route.rule_id.split(".", 1)[1].replace("_", " ")
    why = f"declared destination {', '.join(declared)}" if declared else "the whole route"
    yield Finding(route.rule_id, tuple((e.ms, e.event, e.post) for e in matched), (me,), route.severity,
                  f"{len(matched)} of {len(legs)} legs of the {name} route ({' → '.join(e.post for e in matched)}), "
                  f"purpose {'/'.join(sorted({e.purpose for e in matched}))}, {why}",
                  {"legs_matched": float(len(matched)), "legs": float(len(legs))})


# ESCORT / SPONSOR: travellers linked to the key -------------------------------------------------------------------
def _on_escort(fact: Fact, state: KeyState, rules: RuleSet) -> Iterator[Finding]:
    add(state.escorted, Escorted(fact.ms, fact.event_id, fact.traveller, fact.is_minor, fact.relationship,
                                fact.post_id))
    rule = rules.escort_fanout
    p = rule.params
    recent = [e for e in within(state.escorted, fact.ms, rule.window_ms) if e.relationship not in p.family]
    travellers = {e.traveller for e in recent}
    me = fact.key.partition(":")[2]
    if len(travellers) >= p.min_travellers:
        minors = {e.traveller for e in recent if e.minor}
        severity = p.severity_with_minor if minors else rule.severity
        hours = rule.window_ms // HOUR_MS
        yield Finding("escort_fanout", tuple((e.ms, e.event, e.post) for e in recent), (me, *sorted(travellers)),
                      severity,
                      f"one escort with {len(travellers)} travellers not declared as close family within {hours} h "
                      f"({len(minors)} minor(s)); threshold {p.min_travellers}",
                      {"travellers": float(len(travellers)), "minors": float(len(minors)),
                       "window_hours": float(hours)})
    # an escort's own exits may now complete a shuttling pattern
    yield from _shuttling(fact.ms, state, me, rules)


def _on_sponsor(fact: Fact, state: KeyState, rules: RuleSet) -> Iterator[Finding]:
    rule = rules.sponsor_fanout
    if fact.sponsor_kind not in rule.params.kinds or fact.sponsor_registered:
        return
    add(state.sponsored, Sponsored(fact.ms, fact.event_id, fact.traveller, fact.post_id))
    recent = within(state.sponsored, fact.ms, rule.window_ms)
    travellers = {e.traveller for e in recent}
    if len(travellers) >= rule.params.min_travellers:
        hours = rule.window_ms // HOUR_MS
        yield Finding("sponsor_fanout", tuple((e.ms, e.event, e.post) for e in recent), tuple(sorted(travellers)),
                      rule.severity,
                      f"one unregistered {fact.sponsor_kind.lower()} declared by {len(travellers)} travellers within "
                      f"{hours} h; threshold {rule.params.min_travellers}",
                      {"travellers": float(len(travellers)), "window_hours": float(hours)})


# BIOMETRIC / DOCUMENT: from dedup -------------------------------------------------------------------------------
def _replace(entries: list[R], fact: Fact, entry: R | None) -> list[R]:
    """``entries`` with the fact's event at its revision (``entry``, or none); an older revision changes nothing."""
    held = [e for e in entries if e.event == fact.event_id]
    if any(e.revision > fact.revision for e in held):
        return entries  # a replayed earlier revision
    kept: list[R] = [e for e in entries if e.event != fact.event_id]
    if entry is not None:
        add(kept, entry)
    return kept


def _on_biometric(fact: Fact, state: KeyState, rules: RuleSet) -> Iterator[Finding]:
    state.subjects = _replace(state.subjects, fact, Subject(fact.ms, fact.event_id, fact.subject, fact.post_id,
                                                            fact.score, fact.quality, fact.thresholds_version,
                                                            fact.revision))
    rule = rules.document_multiple_subjects
    for found in _many(fact, state.subjects, rule, rule.params.min_subjects,
                       "one document presented by {n} different biometric subjects", "subjects"):
        evidence = [e for e in within(state.subjects, fact.ms, rule.window_ms) if e.score]
        if evidence:  # the capture that failed verification worst: its 1:1 score and quality
            low = min(evidence, key=lambda e: e.score)
            found = replace(found, explanation=f"{found.explanation}; a capture scored {low.score:.3f} against the "
                            f"document's subject at quality {low.quality:.2f} (thresholds {low.thresholds})",
                            features={**found.features, "lowest_score": float(low.score),
                                      "quality": float(low.quality)})
        yield found


def _on_document(fact: Fact, state: KeyState, rules: RuleSet) -> Iterator[Finding]:
    # no document: the link is no longer red nor confirmed, its documents go
    state.documents = _replace(state.documents, fact, Document(fact.ms, fact.event_id, fact.traveller, fact.post_id,
                                                               fact.score, fact.thresholds_version, "", fact.revision)
                               if fact.traveller else None)
    rule = rules.subject_multiple_documents
    for found in _many(fact, state.documents, rule, rule.params.min_documents,
                       "one biometric subject presenting {n} different documents", "documents"):
        linked = [e for e in state.documents if e.score]
        if linked:
            best = max(linked, key=lambda e: e.score)
            found = replace(found, explanation=f"{found.explanation}; faces linked at {best.score:.3f} "
                            f"(thresholds {best.thresholds}, a red or officer-confirmed link)",
                            features={**found.features, "link_score": float(best.score)})
        yield found


def _many(fact: Fact, entries: Sequence[Subject | Document], rule: Rule[Any], threshold: int, text: str,
          feature: str) -> Iterator[Finding]:
    """Several distinct values (subjects or documents, ``entry[2]``) with one key within one window holding this fact.

    Every window of the rule's length holding the fact is tried (one starting at each entry up to
    a window before it), not only the one ending at it: facts arriving out of event-time order
    must find what they would have found in order.
    """
    near = [e for e in entries if abs(e[0] - fact.ms) <= rule.window_ms]
    if len({e[2] for e in near}) < threshold:
        return  # not even the two windows' span together holds enough (the common case: one subject)
    starts = sorted({e[0] for e in near if e[0] <= fact.ms})
    recent: list[Subject | Document] = []
    for start in starts:
        held = [e for e in near if start <= e[0] <= start + rule.window_ms]
        if len({e[2] for e in held}) > len({e[2] for e in recent}):
            recent = held
    values = {e[2] for e in recent}
    if len(values) >= threshold:
        # one alert per key: its id must not depend on which of the key's facts happened to arrive first
        yield Finding(rule.rule_id, tuple((e.ms, e.event, e.post) for e in recent),
                      (fact.key.partition(":")[2], *sorted(values)), rule.severity, text.format(n=len(values)),
                      {feature: float(len(values))}, instance="key")


# LANDING -------------------------------------------------------------------------------------------------------
def _on_landing(fact: Fact, state: KeyState, rules: RuleSet) -> Iterator[Finding]:
    add(state.landings, Landing(fact.ms, fact.event_id, fact.post_id))
    here = ((fact.ms, fact.event_id, fact.post_id),)
    rule = rules.maritime_landing
    p = rule.params
    persons = fact.adults + fact.minors
    share = fact.minors / persons if persons else 0.0
    reasons = []
    if persons >= p.min_persons:
        reasons.append(f"{persons} people (threshold {p.min_persons})")
    if persons >= 10 and share >= p.min_minor_share:
        reasons.append(f"{share:.0%} minors (threshold {p.min_minor_share:.0%})")
    if fact.unaccompanied_minors:
        reasons.append(f"{fact.unaccompanied_minors} unaccompanied minor(s)")
    if reasons:
        severity = p.severity_with_minors if (fact.unaccompanied_minors or share >= p.min_minor_share) \
            else rule.severity
        yield Finding("maritime_landing", here, (), severity, f"boat landing at {fact.post_id}: " + "; ".join(reasons),
                      {"persons": float(persons), "minor_share": round(share, 3),
                       "unaccompanied_minors": float(fact.unaccompanied_minors)}, instance=fact.event_id)
    repeat = rules.repeat_vessel
    if fact.key.startswith("vessel:"):
        recent = within(state.landings, fact.ms, repeat.window_ms)
        if len(recent) >= repeat.params.min_landings:
            days = repeat.window_ms // (24 * HOUR_MS)
            yield Finding("repeat_vessel", tuple((e.ms, e.event, e.site) for e in recent), (), repeat.severity,
                          f"the same vessel landed {len(recent)} times within {days} days "
                          f"(threshold {repeat.params.min_landings})", {"landings": float(len(recent))})


# Roles whose facts can be revised (a dedup decision or link changed), and the rule a revision can withdraw.
REVISABLE = {"BIOMETRIC": "document_multiple_subjects", "DOCUMENT": "subject_multiple_documents"}
BY_ROLE = {"SELF": _on_self, "ESCORT": _on_escort, "SPONSOR": _on_sponsor, "BIOMETRIC": _on_biometric,
           "DOCUMENT": _on_document, "LANDING": _on_landing}
