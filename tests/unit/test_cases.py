"""Cases: indicators combined per key, the review lifecycle, replays, erasure (no broker)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agents.cases import (
    CaseState,
    Indicator,
    add_indicator,
    allowed_actions,
    assess,
    calibrate,
    case_id,
    case_row,
    check_form,
    decide,
    decision_command,
    forget,
    load_policy,
    read_command,
)
from schemas.errors import InvalidMessage

POLICY = load_policy()
NOW = datetime(2026, 12, 1, tzinfo=UTC)
KEY = "doc:tok-escort"


def ind(alert_id: str, rule: str, severity: str, version: int = 1, status: str = "ACTIVE", ms: int = 1000,
        subjects: tuple[str, ...] = ("tok-escort", "tok-a")) -> Indicator:
    return Indicator(alert_id, rule, "trafficking", severity, status, version, ms, ms + 10, ("ID-ETK",), subjects,
                     (f"ev-{alert_id}",), f"{rule} explanation")


def state_of(*indicators: Indicator) -> CaseState:
    state = CaseState()
    for i in indicators:
        add_indicator(state, i, KEY, POLICY)
    return state


def decision(action: str, n: int = 1, **kw: object) -> dict:
    return {"decision_id": f"d{n}", "action": action, "reason_code": None, "pathway": None,
            "officer_token": "off-1", "officer_role": "reviewer", "post_id": "ID-ETK", "decided_at": NOW, **kw}


def test_low_alone_never_opens_high_always_does_medium_at_the_threshold() -> None:
    lows = [ind(f"L{n}", f"low_rule_{n}", "LOW") for n in range(8)]
    assert not assess(lows, POLICY).opens  # eight LOW indicators: still no case
    assert assess([ind("H", "minor_unrelated_adult", "HIGH")], POLICY).opens
    medium = assess([ind("M", "escort_fanout", "MEDIUM")], POLICY)
    assert medium.opens == (POLICY.severity_weights["MEDIUM"] >= POLICY.threshold)
    assert assess([ind("M", "escort_fanout", "MEDIUM"), ind("L", "anomaly_score", "LOW")], POLICY).score == \
        POLICY.severity_weights["MEDIUM"] + POLICY.severity_weights["LOW"]
    # one rule counts once, at its highest severity
    twice = assess([ind("M1", "escort_fanout", "MEDIUM"), ind("M2", "escort_fanout", "HIGH")], POLICY)
    assert twice.score == POLICY.severity_weights["HIGH"] and twice.rules == ("escort_fanout",)


def test_a_case_is_the_same_whatever_order_its_indicators_and_their_copies_arrive_in() -> None:
    copies = [ind("A", "escort_fanout", "MEDIUM", 1), ind("A", "escort_fanout", "HIGH", 2),
              ind("B", "shuttling", "MEDIUM", 1), ind("C", "tourist_exit_recruitment_corridor", "LOW", 1)]
    rows = set()
    for order in (copies, copies[::-1], [copies[2], copies[1], copies[3], copies[0]]):
        row = case_row(state_of(*order), POLICY, "k", NOW)
        assert row is not None
        rows.add((row["status"], row["severity"], row["score"], tuple(row["indicator_ids"]), tuple(row["rules"])))
    assert len(rows) == 1 and next(iter(rows))[:2] == ("OPEN", "HIGH")


def test_lifecycle_decisions_replays_and_refusals() -> None:
    state = state_of(ind("A", "minor_unrelated_adult", "HIGH"))
    assert allowed_actions("OPEN") == ("START_REVIEW", "CONFIRM", "DISMISS", "REFER")
    assert decide(state, decision("START_REVIEW", 1), POLICY, "k", NOW)["status_after"] == "IN_REVIEW"
    version = state.version
    assert decide(state, decision("START_REVIEW", 1), POLICY, "k", NOW) is None  # a replay
    assert state.version == version
    row = decide(state, decision("REFER", 2, pathway="CHILD_PROTECTION"), POLICY, "k", NOW)
    assert row["status_after"] == "REFERRED" and row["rules"] == ["minor_unrelated_adult"]
    with pytest.raises(InvalidMessage) as err:
        decide(state, decision("DISMISS", 3, reason_code="OTHER"), POLICY, "k", NOW)
    assert err.value.code == "not_allowed" and err.value.field == "action"
    with pytest.raises(InvalidMessage) as err:
        decide(CaseState(), decision("CONFIRM", 4), POLICY, "k", NOW)
    assert err.value.code == "unknown_case"
    case = case_row(state, POLICY, "k", NOW)
    assert case["status"] == "REFERRED" and case["pathways"] == ["CHILD_PROTECTION"] and case["decisions"] == 2


def test_new_evidence_reopens_a_dismissed_case_and_evidence_falling_away_withdraws_an_open_one() -> None:
    state = state_of(ind("A", "escort_fanout", "HIGH"))
    decide(state, decision("DISMISS", 1, reason_code="EXPLAINED_FAMILY"), POLICY, "k", NOW)
    assert state.status == "DISMISSED"
    add_indicator(state, ind("A", "escort_fanout", "HIGH", 2), KEY, POLICY)  # the same evidence, grown
    assert state.status == "DISMISSED"
    add_indicator(state, ind("B", "shuttling", "HIGH"), KEY, POLICY)
    assert state.status == "OPEN" and state.reopened == 1
    other = state_of(ind("X", "document_multiple_subjects", "HIGH"))
    add_indicator(other, ind("X", "document_multiple_subjects", "HIGH", 2, status="WITHDRAWN"), KEY, POLICY)
    assert other.status == "WITHDRAWN"


def test_form_checks_name_the_field() -> None:
    for action, reason, pathway, field in (("DISMISS", None, None, "reason_code"), ("REFER", None, "X", "pathway"),
                                           ("CONFIRM", "OTHER", None, "reason_code"), ("NOPE", None, None, "action")):
        with pytest.raises(InvalidMessage) as err:
            check_form(action, reason, pathway)
        assert err.value.field == field


def test_state_and_commands_round_trip_and_erasure() -> None:
    state = state_of(ind("A", "escort_fanout", "HIGH", subjects=("tok-escort", "tok-a", "tok-b")))
    decide(state, decision("CONFIRM", 1), POLICY, "k", NOW)
    again = CaseState.from_bytes(state.to_bytes())
    assert case_row(again, POLICY, "k", NOW) == case_row(state, POLICY, "k", NOW)
    officer = "off-9"
    assert read_command(decision_command(decision("CONFIRM"), officer))["decision"]["officer_token"] == officer
    kept = forget(again, ["tok-a"])
    assert kept is not None and "tok-a" not in case_row(kept, POLICY, "k", NOW)["subjects"]
    assert forget(CaseState.from_bytes(state.to_bytes()), ["tok-escort"]) is None  # their own case goes whole
    assert case_id(KEY) == case_id(KEY) != case_id("doc:other")


def test_calibration_keeps_cases_within_the_budget_and_never_below_a_medium() -> None:
    scores = [(10.0, "HIGH")] * 5 + [(3.0, "MEDIUM")] * 20 + [(6.0, "MEDIUM")] * 3 + [(1.0, "LOW")] * 500
    assert calibrate(scores, 100_000, 10.0, POLICY) == 3.0  # 5 + 23 = 28 <= 100 cases
    assert calibrate(scores, 10_000, 1.0, POLICY) > 6.0  # only the HIGH ones fit (and they exceed it anyway)
    assert calibrate(scores, 10_000, 10.0, POLICY) == 6.0  # 5 + 3 = 8 <= 10
