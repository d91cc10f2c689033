"""Every rule's alerts are independent of arrival order within the allowed lateness, of batches and of replays."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from agents.pseudonymise import Tokeniser
from agents.trafficking.config import HOUR_MS, load_rules
from agents.trafficking.engine import Alert, _reorder, evaluate, latest, run
from agents.trafficking.facts import Fact
from agents.trafficking.state import KeyState
from streams.sim.files import simulated_facts
from streams.sim.simulator import Simulator
from streams.sim.world import Mix
from tests.unit.test_trafficking import crossing

RULES = load_rules()
TOK = Tokeniser(b"unit-test-key-not-a-secret-00001", "test")


def active(alerts: list[Alert]) -> set[tuple]:
    """What an officer would see: every active alert, its rule, severity, evidence and people."""
    return {(a.alert_id, a.rule_id, a.severity, a.evidence_event_ids, a.subjects)
            for a in latest(alerts).values() if a.status == "ACTIVE"}


def through_table(facts: list[Fact], batch: int) -> list[Alert]:
    """The agent's way: states as JSON bytes between batches (the changelog), facts in batches."""
    from agents.anomaly import evaluate_batch

    table: dict[str, bytes] = {}

    def store(key: str, state: KeyState | None) -> None:
        if state is None:
            table.pop(key, None)
        else:
            table[key] = state.to_bytes()

    alerts: list[Alert] = []
    for i in range(0, len(facts), batch):
        alerts += evaluate_batch(facts[i:i + batch], lambda k: KeyState.from_bytes(table.get(k)), store, RULES, None)
    return alerts


def shuffled_within_lateness(facts: list[Fact], seed: int, lateness_ms: int) -> list[Fact]:
    """Arrival order: each fact delayed by up to the lateness, so none arrives later than that behind the newest."""
    rng = random.Random(seed)
    return sorted(facts, key=lambda f: f.ms + rng.uniform(0, lateness_ms))


def test_two_corridor_exits_twenty_days_apart_give_the_same_alerts_in_either_order() -> None:
    e1 = crossing("W1", 0, post="ID-NNK", visa_type="VISA_FREE", event="e1")
    e2 = crossing("W1", 20 * 24, post="ID-NNK", visa_type="VISA_FREE", event="e2")
    forward, backward = run([e1, e2], RULES)[1], run([e2, e1], RULES)[1]
    assert len(active(forward)) == 2
    assert active(backward) == active(forward)


def test_an_escort_fanout_seen_backwards_is_the_same_alert() -> None:
    from tests.unit.test_trafficking import escorted

    facts = [escorted("E1", f"T{i}", i * 5.0) for i in range(6)]
    assert active(run(facts[::-1], RULES)[1]) == active(run(facts, RULES)[1]) != set()


@pytest.fixture(scope="module")
def month() -> list[Fact]:
    """Eight simulated days with many planted patterns (rates times 5), landings and dedup facts."""
    sim = Simulator(seed=31, dim=8, days=8, population=1500, end=datetime(2026, 6, 1, tzinfo=UTC),
                    mix=Mix(planted_factor=5.0))
    return list(simulated_facts(sim, 3_500, 6, TOK))


@pytest.mark.parametrize("seed", [1, 2])
def test_shuffled_within_the_lateness_gives_the_same_alerts(month: list[Fact], seed: int) -> None:
    in_order = active(run(month, RULES)[1])
    assert len({a[1] for a in in_order}) >= 8  # many rules have something to say
    arrivals = shuffled_within_lateness(month, seed, RULES.lateness_ms)
    assert arrivals != month
    assert active(through_table(arrivals, batch=[1, 5000][seed - 1])) == in_order


def test_replayed_facts_after_a_crash_change_nothing(month: list[Fact]) -> None:
    in_order = active(run(month, RULES)[1])
    rng = random.Random(9)
    arrivals = shuffled_within_lateness(month, 9, RULES.lateness_ms)
    replayed: list[Fact] = []
    for i in range(0, len(arrivals), 1000):  # every batch after the first delivered again, in part
        chunk = arrivals[i:i + 1000]
        replayed += chunk + (rng.sample(arrivals[max(0, i - 1000):i], k=min(i, 300)) if i else [])
    assert active(through_table(replayed, batch=500)) == in_order


def test_a_revision_flipping_back_after_a_late_fact_outranks_the_withdrawal_sent_before() -> None:
    """Revisions withdraw and restore an alert; a late fact in between must not make the restored copy rank lower."""
    from tests.unit.test_trafficking import _decision

    def doc_facts(facts: list[Fact]) -> list[Fact]:
        return [f for f in facts if f.key == "doc:D1"]

    b1 = doc_facts(_decision("D1", "S-A", 1, "b1"))
    b2 = doc_facts(_decision("D1", "S-B", 2, "b2"))
    b2_back = doc_facts(_decision("D1", "S-A", 2, "b2", revision=2))
    b2_again = doc_facts(_decision("D1", "S-B", 2, "b2", revision=3))
    late = [crossing("D1", 0.5, event="s0")]
    in_order = b1 + b2 + b2_back + b2_again
    with_late = b1 + b2 + b2_back + late + b2_again
    expected = {a.alert_id: a.status for a in latest(run(in_order, RULES)[1]).values()}
    assert "ACTIVE" in expected.values()
    assert {a.alert_id: a.status for a in latest(run(with_late, RULES)[1]).values()} == expected


def _runner(days: int) -> list[Fact]:
    """One document leaving every 8 hours for ``days`` days, each time escorting someone new: one long shuttling."""
    from tests.unit.test_trafficking import escorted

    facts = []
    for n in range(days * 3):
        facts += [crossing("R1", 8.0 * n, post="ID-ETK", event=f"r{n}"), escorted("R1", f"C{n}", 8.0 * n + 0.1)]
    return facts


def test_an_alert_older_than_the_kept_facts_is_the_same_when_a_fact_comes_late() -> None:
    """A pattern that goes on for a month outlives its part's logged facts (a week and the lateness): a late fact
    evaluates the part again from its base, so the month-long alert keeps its id, evidence and people."""
    facts = _runner(30)
    in_order = active(run(facts, RULES)[1])
    assert {a[1] for a in in_order} >= {"shuttling"}
    assert max(len(a[3]) for a in in_order if a[1] == "shuttling") > 150  # a month of evidence in one alert
    for seed, batch in ((3, 1), (4, 50)):
        arrivals = shuffled_within_lateness(facts, seed, RULES.lateness_ms)
        assert arrivals != facts
        assert active(through_table(arrivals, batch=batch)) == in_order


def test_dedup_decisions_behind_their_documents_crossings_evaluate_nothing_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A crossing's dedup decision comes after the document's next crossings: late behind them, in order among the
    decisions. Parts keep that from evaluating anything again (it cost a replay of a year of facts per decision)."""
    from agents.trafficking import engine
    from tests.unit.test_trafficking import _decision

    facts = _runner(10)
    decisions = [f for n in range(0, 30) for f in _decision("R1", "S-A" if n % 7 else "S-B", 8.0 * n, f"r{n}")
                 if f.key == "doc:R1"]
    in_order = active(run(sorted(facts + decisions, key=lambda f: f.ms), RULES)[1])
    lagging = sorted(facts + decisions, key=lambda f: f.ms + (3 * 8 * HOUR_MS if f.role == "BIOMETRIC" else 0))
    replays = []
    monkeypatch.setattr(engine, "_reorder", lambda *a: replays.append(a) or _reorder(*a))
    assert active(run(lagging, RULES)[1]) == in_order
    assert {a[1] for a in in_order} >= {"shuttling", "document_multiple_subjects"} and replays == []


def test_each_role_reads_and_writes_only_its_part(month: list[Fact]) -> None:
    """What makes parts sound: a role's rules touch no other part's entries, and its episodes carry its part."""
    from agents.trafficking.config import READS
    from agents.trafficking.rules import BY_ROLE
    from agents.trafficking.state import PART_OF, PARTS

    class Forbidden(list):  # type: ignore[type-arg]
        def __getattribute__(self, name: str) -> Any:
            raise AssertionError("another part's entries were touched")

        def __iter__(self) -> Any:
            raise AssertionError("another part's entries were read")

        def __len__(self) -> int:
            raise AssertionError("another part's entries were read")

        def __getitem__(self, i: Any) -> Any:
            raise AssertionError("another part's entries were read")

    assert set(PARTS) == set(READS.values()) == set(PART_OF.values())
    states, _ = run([], RULES)
    for fact in month:
        state = states.setdefault(fact.key, KeyState())
        fenced = dataclasses.replace(KeyState.from_bytes(state.to_bytes()),  # a copy the rules may write to
                                     **{name: Forbidden() for part, names in PARTS.items()
                                        if part != PART_OF[fact.role] for name in names})
        list(BY_ROLE[fact.role](fact, fenced, RULES))
        states[fact.key], _ = evaluate(fact, state, RULES)
    parts = {ep["rule_id"]: ep["part"] for s in states.values() for ep in s.episodes.values()}
    assert len(parts) >= 8
    assert all(part == READS["route" if rule.startswith("route.") else rule] for rule, part in parts.items())


def test_a_state_written_before_parts_reads_back_with_its_facts_in_their_parts() -> None:
    from agents.trafficking.state import pack
    from tests.unit.test_trafficking import _decision, escorted

    facts = [crossing("D1", 1.0), escorted("D1", "T1", 2.0), *[f for f in _decision("D1", "S-A", 3.0, "b1")
                                                              if f.key == "doc:D1"]]
    legacy = {"crossings": [[f.ms, f.event_id, "ID-BTH", "IDN", "EXIT", "TOURISM", "", "SGP"] for f in facts[:1]],
              "log": [pack(f) for f in facts], "seen": ["x"], "last": [facts[-1].ms, 4, "b1", 1], "max_ms": facts[-1].ms}
    state = KeyState.from_bytes(orjson.dumps(legacy))
    assert {part: len(log) for part, log in state.logs.items()} == {"travel": 2, "subjects": 1}
    assert state.crossings[0].event == facts[0].event_id
