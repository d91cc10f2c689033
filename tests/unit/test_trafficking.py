"""Trafficking rules on small literal fact sequences: what fires, what must not, and that alerts grow, not repeat."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agents.pseudonymise import Tokeniser, crossing_row, landing_row
from agents.trafficking.config import RulesError, load_rules
from agents.trafficking.engine import Alert, evaluate, latest, run
from agents.trafficking.facts import Companion, Fact, crossing_facts, decision_facts, landing_facts, link_facts
from agents.trafficking.state import KeyState, unpack

RULES = load_rules()
T0 = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)
TOK = Tokeniser(b"unit-test-key-not-a-secret-00001", "test")


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def crossing(doc: str, hours: float, post: str = "ID-BTH", direction: str = "EXIT", event: str | None = None,
             **kw: Any) -> Fact:
    country = {"ID": "IDN", "MY": "MYS", "SG": "SGP", "KH": "KHM", "TH": "THA"}[post[:2]]
    defaults: dict[str, Any] = dict(post_country=country, travel_purpose="TOURISM", nationality="IDN",
                                    age_band="25-34", origin_country="IDN", destination_country="SGP")
    return Fact(key=f"doc:{doc}", role="SELF", event_id=event or f"{doc}-{hours}-{post}", occurred_at=at(hours),
                post_id=post, direction=direction, traveller=doc, **{**defaults, **kw})


def escorted(escort: str, traveller: str, hours: float, relationship: str = "UNRELATED", minor: bool = False,
             post: str = "ID-ETK") -> Fact:
    return Fact(key=f"doc:{escort}", role="ESCORT", event_id=f"{traveller}-{hours}", occurred_at=at(hours),
                post_id=post, post_country="IDN", direction="EXIT", traveller=traveller, is_minor=minor,
                relationship=relationship)


def fired(facts: list[Fact]) -> dict[str, Alert]:
    _, alerts = run(facts, RULES)
    return latest(alerts)


def rules_of(facts: list[Fact]) -> set[str]:
    return {a.rule_id for a in fired(facts).values()}


# -- fan-out ----------------------------------------------------------------------------------------------------
def test_escort_with_four_unrelated_travellers_in_a_week_fires_once_and_grows() -> None:
    facts = [escorted("E1", f"T{i}", 20 * i) for i in range(6)]
    _, alerts = run(facts, RULES)
    fan = [a for a in alerts if a.rule_id == "escort_fanout"]
    assert len({a.alert_id for a in fan}) == 1, "one pattern instance is one alert"
    assert [len(a.evidence_event_ids) for a in fan] == [4, 5, 6], "updated as evidence grows"
    final = latest(alerts)[fan[0].alert_id]
    assert (final.severity, final.key_kind, final.key_token) == ("MEDIUM", "doc", "E1")
    assert set(final.subjects) >= {"T0", "T5"}
    assert "6 travellers" in final.explanation and final.features["travellers"] == 6.0
    assert final.indicators and final.rule_version == 1 and final.rules_version == RULES.version


def test_escort_fanout_with_a_minor_is_high() -> None:
    facts = [escorted("E1", "T0", 0, minor=True)] + [escorted("E1", f"T{i}", i) for i in range(1, 4)]
    assert fired(facts)[next(iter(fired(facts)))].severity == "HIGH"


@pytest.mark.parametrize("near_miss", [
    [escorted("E1", f"T{i}", i) for i in range(3)],                                  # three is below the threshold
    [escorted("E1", f"T{i}", 100 * i) for i in range(4)],                            # spread beyond the 168 h window
    [escorted("E1", f"T{i}", i, relationship="PARENT") for i in range(5)],           # a parent with their children
    [escorted("E1", "T0", i) for i in range(6)],                                     # one traveller escorted often
])
def test_escort_fanout_near_misses(near_miss: list[Fact]) -> None:
    assert "escort_fanout" not in rules_of(near_miss)


def test_unregistered_sponsor_fanout_fires_and_registered_agency_does_not() -> None:
    def sponsored(n: int, registered: bool) -> Fact:
        return Fact(key="sponsor:S1", role="SPONSOR", event_id=f"w{n}", occurred_at=at(n), post_id="ID-ETK",
                    traveller=f"W{n}", sponsor_kind="EMPLOYER", sponsor_registered=registered)

    assert rules_of([sponsored(n, False) for n in range(3)]) == {"sponsor_fanout"}
    assert rules_of([sponsored(n, True) for n in range(10)]) == set()
    assert rules_of([sponsored(n, False) for n in range(2)]) == set()


# -- minors -----------------------------------------------------------------------------------------------------
def test_minor_with_unrelated_escort_fires_high_and_with_a_parent_does_not() -> None:
    stranger = (Companion("ADULT", "FRIEND", True),)
    minor = crossing("M1", 0, is_minor=True, age_band="12-17", companions=stranger)
    minor_entry = crossing("M1", 1.5, post="SG-HBF", direction="ENTRY", is_minor=True, age_band="12-17",
                           companions=stranger)
    alerts = fired([minor, minor_entry])
    assert [a.rule_id for a in alerts.values()] == ["minor_unrelated_adult"]
    alert = next(iter(alerts.values()))
    assert alert.severity == "HIGH" and len(alert.evidence_event_ids) == 2, "exit and entry of one trip: one alert"
    assert set(alert.subjects) == {"M1", "ADULT"}
    with_parent = (Companion("MUM", "PARENT", False), Companion("ADULT", "FRIEND", True))
    assert rules_of([crossing("M2", 0, is_minor=True, companions=with_parent)]) == set()
    assert rules_of([crossing("A1", 0, companions=stranger)]) == set(), "an adult with a friend is nothing"


def test_unaccompanied_minor_fires() -> None:
    assert rules_of([crossing("M3", 0, is_minor=True, age_band="12-17")]) == {"unaccompanied_minor"}


# -- shuttling --------------------------------------------------------------------------------------------------
def _runner_day(offset: float) -> list[Fact]:
    return [crossing("R1", offset, event=f"out{offset}"),
            escorted("R1", f"C{offset}", offset + 0.01, relationship="FRIEND", post="ID-BTH"),
            crossing("R1", offset + 3, post="SG-HBF", event=f"back{offset}")]


def test_shuttling_runner_with_changing_companions_fires() -> None:
    facts = _runner_day(0) + _runner_day(7) + _runner_day(14)
    alert = next(a for a in fired(facts).values() if a.rule_id == "shuttling")
    assert alert.features["exits"] >= 3 and alert.features["companions"] == 3


def test_commuter_crossing_daily_is_not_shuttling() -> None:
    facts = [crossing("C9", 12 * i, post="MY-JBC" if i % 2 == 0 else "SG-WDL", visa_type="COMMUTER_PASS",
                      travel_purpose="BUSINESS") for i in range(6)]
    assert "shuttling" not in rules_of(facts)


def test_repeat_crossing_without_companions_is_not_shuttling() -> None:
    facts = [crossing("B1", 8 * i, post="ID-BTH" if i % 2 == 0 else "SG-HBF") for i in range(8)]
    assert "shuttling" not in rules_of(facts)


# -- documents --------------------------------------------------------------------------------------------------
def _decision(doc: str, subject: str, hours: float, event: str, revision: int = 1) -> list[Fact]:
    return decision_facts({"subject_id": subject, "identity_token": doc, "event_id": event, "occurred_at": at(hours),
                           "post_id": "ID-CGK", "revision": revision})


def _link(a: tuple[str, str], b: tuple[str, str], hours: float, link: str) -> list[Fact]:
    return link_facts({"key": f"subject:{a[0]}", "event_id": f"{link}/{n}", "occurred_at": at(hours),
                       "post_id": "ID-CGK", "traveller": side[1], "subject": other[0], "score": 0.71,
                       "thresholds_version": "t-test", "revision": 1}
                      for n, (side, other) in enumerate(((a, b), (b, a))))


def test_one_document_two_faces_and_one_face_two_documents() -> None:
    same_doc = _decision("D1", "S1", 0, "e1") + _decision("D1", "S2", 30, "e2")
    assert rules_of(same_doc) == {"document_multiple_subjects"}
    same_face = _decision("D2", "S3", 0, "e3") + _decision("D3", "S5", 30, "e4") + _link(("S3", "D2"), ("S5", "D3"),
                                                                                        30, "L1")
    assert rules_of(same_face) == {"subject_multiple_documents"}
    returning = _decision("D4", "S4", 0, "e5") + _decision("D4", "S4", 30, "e6")
    assert rules_of(returning) == set(), "a returning traveller with the same document"
    names = decision_facts({"subject_id": "S6", "identity_token": "N1", "identity_kind": "name", "event_id": "e7",
                            "occurred_at": at(0), "post_id": "ID-CGK"})
    assert names == [], "a namesake is another person, not a borrowed document"


def test_dedup_evidence_carries_scores_quality_and_thresholds() -> None:
    facts = decision_facts({"subject_id": "S1", "identity_token": "D1", "event_id": "e1", "occurred_at": at(0),
                            "post_id": "ID-CGK", "score": float("nan"), "quality": 0.9, "thresholds_version": "v:m"})
    facts += decision_facts({"subject_id": "S2", "identity_token": "D1", "event_id": "e2", "occurred_at": at(3),
                             "post_id": "ID-BTH", "score": 0.04, "quality": 0.82, "thresholds_version": "v:m"})
    [alert] = [a for a in fired(facts).values() if a.rule_id == "document_multiple_subjects"]
    assert "scored 0.040" in alert.explanation and "quality 0.82" in alert.explanation and "v:m" in alert.explanation
    assert alert.features["lowest_score"] == 0.04


def test_impossible_travel_between_distant_posts() -> None:
    jakarta = crossing("D5", 0, post="ID-CGK")
    entikong = crossing("D5", 1, post="ID-ETK")  # ~800 km in an hour, through two border posts
    alert = next(iter(fired([jakarta, entikong]).values()))
    assert alert.rule_id == "impossible_travel" and alert.features["needed_hours"] > 1
    ferry = [crossing("D6", 0, post="ID-BTH"), crossing("D6", 1.4, post="SG-HBF", direction="ENTRY")]
    assert rules_of(ferry) == set(), "Batam → HarbourFront by ferry in 80 minutes is normal"
    later = [crossing("D7", 0, post="ID-CGK"), crossing("D7", 6, post="ID-ETK")]
    assert rules_of(later) == set()


# -- routes -----------------------------------------------------------------------------------------------------
def test_riau_singapore_cambodia_route_declared_at_departure_fires_and_grows() -> None:
    legs = [crossing("V1", 0, post="ID-BTH", destination_country="KHM"),
            crossing("V1", 1.5, post="SG-HBF", direction="ENTRY", destination_country="KHM"),
            crossing("V1", 6, post="SG-SIN", destination_country="KHM"),
            crossing("V1", 9, post="KH-PNH", direction="ENTRY", destination_country="KHM")]
    _, alerts = run(legs, RULES)
    route = [a for a in alerts if a.rule_id == "route.riau_singapore_cambodia"]
    assert len({a.alert_id for a in route}) == 1 and len(route[-1].evidence_event_ids) == 4
    assert route[-1].severity == "HIGH"


def test_route_near_misses() -> None:
    to_singapore = [crossing("V2", 0, post="ID-BTH"), crossing("V2", 1.5, post="SG-HBF", direction="ENTRY")]
    assert rules_of(to_singapore) == set(), "a day trip to Singapore"
    business = [crossing("V3", 0, post="ID-BTH", destination_country="KHM", travel_purpose="BUSINESS")]
    assert rules_of(business) == set(), "purpose outside the route's purposes"


def test_middle_east_transit_declared() -> None:
    leg = crossing("V4", 0, post="ID-CGK", destination_country="SAU", visa_type="VISA_FREE")
    assert rules_of([leg]) == {"route.middle_east_transit"}
    plain = [crossing("V5", 0, post="ID-CGK", destination_country="MYS"),
             crossing("V5", 3, post="MY-KUL", direction="ENTRY", destination_country="MYS"),
             crossing("V5", 30, post="MY-KUL", destination_country="IDN")]
    assert rules_of(plain) == set(), "a round trip to Kuala Lumpur"


# -- labour -----------------------------------------------------------------------------------------------------
def test_work_exit_without_placement_fires_and_with_placement_does_not() -> None:
    assert rules_of([crossing("W1", 0, post="ID-ETK", travel_purpose="WORK")]) == {"non_procedural_work_exit"}
    assert rules_of([crossing("W2", 0, post="ID-ETK", travel_purpose="WORK", has_placement=True)]) == set()
    assert rules_of([crossing("W3", 0, post="MY-TBD", travel_purpose="WORK", nationality="IDN",
                              direction="ENTRY")]) == set(), "entries are not exits"


def test_tourist_exit_through_recruitment_corridor_is_low() -> None:
    alert = next(iter(fired([crossing("W4", 0, post="ID-NNK", visa_type="VISA_FREE")]).values()))
    assert alert.rule_id == "tourist_exit_recruitment_corridor" and alert.severity == "LOW"
    assert rules_of([crossing("W5", 0, post="ID-NNK", visa_type="VISA_FREE", age_band="55-64")]) == set()
    assert rules_of([crossing("W6", 0, post="ID-CGK", visa_type="VISA_FREE")]) == set()


# -- landings ---------------------------------------------------------------------------------------------------
def landing(n: int, hours: float, adults: int, minors: int, unaccompanied: int = 0, vessel: str = "") -> Fact:
    return Fact(key=f"vessel:{vessel}" if vessel else "site:ID-AC-LSM", role="LANDING", event_id=f"L{n}",
                occurred_at=at(hours), post_id="ID-AC-LSM", post_country="IDN", adults=adults, minors=minors,
                unaccompanied_minors=unaccompanied)


def test_landings() -> None:
    big = fired([landing(1, 0, 80, 50, 7)])
    assert [(a.rule_id, a.severity) for a in big.values()] == [("maritime_landing", "HIGH")]
    assert rules_of([landing(2, 0, 8, 1)]) == set(), "a small boat of adults"
    two = fired([landing(3, 0, 80, 10), landing(4, 5, 60, 5)])
    assert len(two) == 2, "two landings at one site are two alerts"
    again = rules_of([landing(5, 0, 6, 0, vessel="VX"), landing(6, 24 * 30, 7, 0, vessel="VX")])
    assert again == {"repeat_vessel"}


# -- the engine -------------------------------------------------------------------------------------------------
def _scenario() -> list[Fact]:
    return ([escorted("E1", f"T{i}", 20 * i) for i in range(6)] + _runner_day(0) + _runner_day(7) + _runner_day(14)
            + _decision("D1", "S1", 0, "e1") + _decision("D1", "S2", 30, "e2")
            + [crossing("D5", 0, post="ID-CGK"), crossing("D5", 1, post="ID-ETK")])


def test_replaying_any_fact_changes_nothing_and_resends_only_current_alerts() -> None:
    facts = sorted(_scenario(), key=lambda f: f.occurred_at)
    states, alerts = run(facts, RULES)
    before = {k: s.to_bytes() for k, s in states.items()}
    _, again = run(facts, RULES, states)
    assert {k: s.to_bytes() for k, s in states.items()} == before
    current = latest(alerts)
    assert again and all(a == current[a.alert_id] for a in again), "copies of the current alerts, nothing new"
    assert set(latest(again)) == set(current)


def test_alerts_lost_in_a_crash_come_back_with_the_redelivered_facts() -> None:
    facts = sorted(_scenario(), key=lambda f: f.occurred_at)
    _, uninterrupted = run(facts, RULES)
    states, delivered = run(facts[:12], RULES)
    _, lost = run(facts[12:20], RULES, states)  # state to the changelog, then the crash: these alerts never left
    assert lost, "the crash must cost some alerts for this test to mean anything"
    restored = {k: KeyState.from_bytes(s.to_bytes()) for k, s in states.items()}
    _, redelivered = run(facts[12:], RULES, restored)  # offsets were not committed: Kafka redelivers from 12
    assert latest(delivered + redelivered) == latest(uninterrupted)


def test_old_evidence_is_forgotten_and_a_later_instance_is_a_new_alert() -> None:
    first = [escorted("E2", f"T{i}", i) for i in range(4)]
    later = [escorted("E2", f"U{i}", 24 * 60 + i) for i in range(4)]  # two months on
    states, alerts = run(first + later, RULES)
    assert len(latest(alerts)) == 2
    assert all(e[0] >= at(24 * 60).timestamp() * 1000 - RULES.horizons["travel"] for e in states["doc:E2"].escorted)


def test_facts_and_alerts_carry_tokens_not_identities() -> None:
    record = {
        "event_id": "0b5f2f0e-2c53-4f43-9d0e-6b7f3d0c1a11", "occurred_at": T0,
        "post": {"post_id": "ID-ETK", "post_type": "LAND", "country": "IDN"}, "direction": "EXIT",
        "traveller": {"document": {"document_type": "PASSPORT", "number": "X9990001", "issuing_state": "IDN",
                                   "expiry_date": None},
                      "given_names": "Synthetic", "surname": "Person", "date_of_birth": T0.date().replace(year=2012),
                      "sex": "F", "nationality": "IDN"},
        "travel_purpose": "TOURISM", "visa_type": None, "placement_id": None,
        "sponsor": {"kind": "EMPLOYER", "name": "Synthetic Estate", "registration_id": None, "contact": None},
        "companions": [{"document_number": "X9990002", "document_issuing_state": "IDN", "relationship": "UNRELATED",
                        "is_escort": True}],
        "carrier": None, "origin_country": "IDN", "destination_country": "MYS", "refused": False,
        "refusal_reason": None, "officer_id": "OFF-IDN-0001", "biometric": None,
    }
    row = crossing_row(record, TOK)
    facts = crossing_facts(record, row, TOK)
    assert [f.role for f in facts] == ["SELF", "ESCORT", "SPONSOR"]
    _, alerts = run(facts, RULES)
    assert {a.rule_id for a in alerts} == {"minor_unrelated_adult"}
    blob = b"".join(f.to_bytes() for f in facts) + repr([a.record("test") for a in alerts]).encode()
    for clear in (b"X9990001", b"X9990002", b"Synthetic", b"2012", b"OFF-IDN"):
        assert clear not in blob
    assert all(Fact.from_bytes(f.to_bytes()) == f for f in facts)


def test_landing_row_becomes_one_fact() -> None:
    record = {
        "landing_id": "5d0c6a9e-8f1b-4c39-9a55-0d2d7f3b9e01", "occurred_at": T0,
        "site": {"site_id": "ID-AC-LSM", "name": "Lhokseumawe", "province": "Aceh", "country": "IDN",
                 "latitude": 5.18, "longitude": 97.15},
        "vessel": {"name": None, "registration": None, "flag_state": None, "vessel_type": "WOODEN_BOAT"},
        "landing_kind": "ARRIVAL", "adults": 90, "minors": 40, "unaccompanied_minors": 3, "nationalities": ["XXA"],
        "persons": [], "officer_id": "OFF-IDN-0002"}
    row = landing_row(record, TOK)
    (fact,) = landing_facts(record, row, TOK)
    assert fact.key == "site:ID-AC-LSM" and rules_of([fact]) == {"maritime_landing"}


def test_rules_file_is_checked(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[2] / "agents" / "trafficking" / "rules.toml").read_text()
    broken = tmp_path / "rules.toml"
    broken.write_text(text.replace("min_travellers = 4\n", "", 1))
    with pytest.raises(RulesError, match="escort_fanout: missing key 'min_travellers'"):
        load_rules(broken)
    broken.write_text(text.replace('severity = "LOW"', 'severity = "URGENT"', 1))
    with pytest.raises(RulesError, match="tourist_exit_recruitment_corridor: severity"):
        load_rules(broken)
    changed = tmp_path / "stricter.toml"
    changed.write_text(text.replace("min_travellers = 4", "min_travellers = 8", 1).replace(
        'version = "2026-12-02.1"', 'version = "test-2"', 1))
    stricter = load_rules(changed)
    facts = [escorted("E1", f"T{i}", i) for i in range(6)]
    assert stricter.version == "test-2" and "escort_fanout" not in {
        a.rule_id for a in latest(run(facts, stricter)[1]).values()}


def test_evaluate_leaves_other_keys_alone() -> None:
    state = KeyState()
    fact = escorted("E1", "T1", 0)
    new, _ = evaluate(fact, state, RULES)
    assert new.escorted and not new.crossings and [unpack(x).event_id for x in new.logs["travel"]] == ["T1-0"]


# -- erasure ----------------------------------------------------------------------------------------------------
def test_erase_fact_deletes_the_persons_state_and_removes_them_from_others() -> None:
    from agents.anomaly import evaluate_batch

    states: dict[str, KeyState] = {}

    def store(key: str, state: KeyState | None) -> None:
        if state is None:
            states.pop(key, None)
        else:
            states[key] = state

    def load(key: str) -> KeyState:
        return states.get(key) or KeyState()

    facts = [escorted("E1", f"T{i}", i) for i in range(5)] + [crossing("T2", 2), crossing("T3", 3)]
    alerts = latest(evaluate_batch(facts, load, store, RULES, None))
    [fanout] = alerts.values()
    assert "T2" in fanout.subjects and {"doc:E1", "doc:T2", "doc:T3"} <= set(states)
    erase = Fact(key="doc:T2", role="ERASE", event_id="erasure-1", occurred_at=at(10), traveller="T2")
    scrub = dataclasses.replace(erase, key="doc:E1")
    assert Fact.from_bytes(erase.to_bytes()) == erase  # the role travels on trafficking.facts
    assert evaluate_batch([erase, scrub], load, store, RULES, None) == []
    assert "doc:T2" not in states and "doc:T3" in states  # T2's own state gone, T3's untouched
    escort = states["doc:E1"]
    assert not any("T2" in e for e in escort.escorted) and len(escort.escorted) == 4
    assert all("T2" not in ep["subjects"] for ep in escort.episodes.values())
    assert "\"T2\"" not in states["doc:E1"].to_bytes().decode()  # (event ids of the evidence stay)
    # the escort's next traveller grows the same alert, now without the erased person
    grown = latest(evaluate_batch([escorted("E1", "T9", 6)], load, store, RULES, None))
    assert list(grown) == [fanout.alert_id] and "T2" not in grown[fanout.alert_id].subjects


def test_dedup_alerts_do_not_depend_on_the_order_their_facts_arrive_in_and_follow_revised_decisions() -> None:
    import itertools

    facts = (_decision("D1", "S1", 0, "e1") + _decision("D1", "S1", 20, "e2") + _decision("D1", "S2", 30, "e3")
             + _decision("D1", "S1", 50, "e4") + _link(("S3", "D2"), ("S5", "D3"), 40, "L1"))
    ids = {frozenset(fired(list(order))) for order in itertools.permutations(facts)}
    assert len(ids) == 1 and len(next(iter(ids))) == 2
    # a decision revised to another subject replaces the first: the document has one subject again, and the
    # alert the first revision raised is withdrawn (a replayed first revision changes nothing)
    revised = (_decision("D7", "S7", 0, "e7") + _decision("D7", "S8", 5, "e8", revision=2)
               + _decision("D7", "S7", 5, "e8", revision=3) + _decision("D7", "S8", 5, "e8", revision=2))
    state, alerts = KeyState(), []
    for f in revised:
        state, out = evaluate(f, state, RULES)
        alerts += out
    assert sorted({e[2] for e in state.subjects}) == ["S7"]
    changes = list(dict.fromkeys((a.status, a.revision) for a in alerts))  # a replay re-sends, unchanged
    assert [c[0] for c in changes] == ["ACTIVE", "WITHDRAWN"] and len({a.alert_id for a in alerts}) == 1
    assert latest(alerts)[alerts[0].alert_id].status == "WITHDRAWN"
    # a link no longer red nor confirmed withdraws its documents, and its alert
    red = _link(("S3", "D2"), ("S5", "D3"), 40, "L9")
    gone = [dataclasses.replace(f, traveller="", revision=2) for f in red]
    _, out = run(red + gone, RULES)
    assert [a.status for a in out] == ["ACTIVE", "WITHDRAWN"]
