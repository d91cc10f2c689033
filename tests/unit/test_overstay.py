"""Overstay on literal entry/exit sequences: which stays open, close, overstay, and what a replay does."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agents.overstay import (
    StayRulesError,
    StayState,
    apply_batch,
    last_permitted_day,
    load_stay_rules,
    row_for_table,
)
from agents.trafficking.facts import Fact
from schemas.contracts import ALERT
from schemas.wire import encode_payload

RULES = load_stay_rules()
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
POSTS = {"IDN": "ID-BTH", "MYS": "MY-JBC", "SGP": "SG-HFC"}


def crossing(direction: str, days: float, country: str = "IDN", nationality: str = "MYS", visa: str = "VISA_FREE",
             who: str = "T1", **kw: Any) -> Fact:
    """One traveller fact (role SELF), as ingest makes it from a crossing."""
    return Fact(key=f"doc:{who}", role="SELF", event_id=str(uuid.uuid4()), occurred_at=T0 + timedelta(days=days),
                post_id=POSTS[country], post_country=country, direction=direction, traveller=who,
                nationality=nationality, visa_type=visa, **kw)


class Table(dict[str, bytes]):
    """The Faust table as the agent uses it, with its changelog's bytes."""

    def load(self, key: str) -> StayState:
        return StayState.from_bytes(self.get(key))

    def store(self, key: str, state: StayState | None) -> None:
        if state is None:
            self.pop(key, None)
        else:
            self[key] = state.to_bytes()


def run(facts: list[Fact], table: Table | None = None) -> tuple[dict[str, dict[str, Any]], list[Any], Table]:
    """Facts one batch each (as a slow stream): the latest row per stay, every alert, the table."""
    table = Table() if table is None else table
    stays: dict[str, dict[str, Any]] = {}
    alerts = []
    for fact in facts:
        rows, out = apply_batch([fact], table.load, table.store, RULES, "ops-test")
        for row in rows:
            if row["stay_id"] not in stays or row["version"] >= stays[row["stay_id"]]["version"]:
                stays[row["stay_id"]] = row
        alerts += out
    return stays, alerts, table


def test_entry_then_exit_in_time_is_one_closed_stay_and_no_alert() -> None:
    entry, exit_ = crossing("ENTRY", 0), crossing("EXIT", 29.5)
    stays, alerts, table = run([entry, exit_])
    assert list(stays) == [entry.event_id] and alerts == []
    stay = stays[entry.event_id]
    assert (stay["status"], stay["rule_id"], stay["allowed_days"], stay["overstay_days"]) == (
        "closed", "idn.asean_visa_free", 30, 0)
    assert stay["last_permitted_day"] == "2026-03-30" and stay["exit_event_id"] == exit_.event_id
    assert StayState.from_bytes(table["doc:T1"]).open == {}


def test_a_late_exit_is_an_overstay_alert_with_both_events() -> None:
    entry, exit_ = crossing("ENTRY", 0), crossing("EXIT", 45)  # 1 March + 45 days = 15 April; last day 30 March
    stays, [alert], _ = run([entry, exit_])
    assert stays[entry.event_id]["overstay_days"] == 16
    assert alert.rule_id == "overstay" and alert.severity == "LOW" and alert.subjects == ("T1",)
    assert alert.evidence_event_ids == (entry.event_id, exit_.event_id) and alert.post_ids == ("ID-BTH",)
    assert alert.features["overstay_days"] == 16 and alert.features["allowed_days"] == 30
    assert "screen before any sanction" in alert.explanation
    encode_payload(ALERT, alert.record("ops-test", "overstay"))


def test_a_long_overstay_is_medium_and_the_day_of_entry_counts() -> None:
    _, [alert], _ = run([crossing("ENTRY", 0), crossing("EXIT", 130)])
    assert alert.severity == "MEDIUM"
    assert last_permitted_day(T0, 30).isoformat() == "2026-03-30"
    stays, alerts, _ = run([crossing("ENTRY", 0), crossing("EXIT", 29, who="T2")])  # another traveller: no pair
    assert alerts == [] and {s["status"] for s in stays.values()} == {"open", "exit_without_entry"}


def test_an_entry_without_exit_stays_open_with_its_last_permitted_day() -> None:
    entry = crossing("ENTRY", 0, visa="B211A", nationality="AUS")
    stays, alerts, table = run([entry])
    assert alerts == [] and stays[entry.event_id]["status"] == "open"
    assert stays[entry.event_id]["last_permitted_day"] == "2026-04-29" and "IDN" in table.load("doc:T1").open


def test_a_second_entry_closes_the_first_stay_as_no_exit_recorded() -> None:
    first, second = crossing("ENTRY", 0), crossing("ENTRY", 50)
    stays, alerts, _ = run([first, second])
    assert stays[first.event_id]["status"] == "no_exit_recorded" and stays[second.event_id]["status"] == "open"
    assert alerts == [], "a missing exit is not judged: the traveller may have left unrecorded"


@pytest.mark.parametrize("fact", [
    crossing("ENTRY", 0, nationality="IDN"),              # a national coming home
    crossing("ENTRY", 0, refused=True),                   # refused: never entered
    Fact(key="doc:E", role="ESCORT", event_id="e", occurred_at=T0, direction="ENTRY", post_country="IDN"),
])
def test_nationals_refusals_and_other_roles_open_no_stay(fact: Fact) -> None:
    stays, alerts, table = run([fact])
    assert stays == {} and alerts == [] and table == {}


def test_stays_are_per_country_and_no_rule_means_never_judged() -> None:
    into_idn, out_of_mys = crossing("ENTRY", 0), crossing("EXIT", 60, country="MYS", nationality="SGP")
    stays, alerts, _ = run([into_idn, out_of_mys])
    assert stays[into_idn.event_id]["status"] == "open"
    assert stays[out_of_mys.event_id]["status"] == "exit_without_entry" and alerts == []
    unknown = crossing("ENTRY", 0, visa="DIPLOMATIC", nationality="FRA", who="T3")
    late = crossing("EXIT", 400, visa="DIPLOMATIC", nationality="FRA", who="T3")
    stays, alerts, _ = run([unknown, late])
    assert stays[unknown.event_id]["allowed_days"] == 0 and stays[unknown.event_id]["overstay_days"] == 0
    assert alerts == []


def test_a_replayed_fact_changes_nothing_and_sends_its_rows_again() -> None:
    entry, exit_ = crossing("ENTRY", 0), crossing("EXIT", 45)
    stays, alerts, table = run([entry, exit_])
    before = dict(table)
    rows, again = apply_batch([exit_, entry], table.load, table.store, RULES, "ops-test")
    assert dict(table) == before, "state unchanged"
    assert [a.alert_id for a in again] == [a.alert_id for a in alerts]
    assert {r["stay_id"]: r["status"] for r in rows} == {entry.event_id: "closed"}


def test_the_state_round_trips_through_the_changelog_as_a_restart_reads_it() -> None:
    entry = crossing("ENTRY", 0)
    _, _, table = run([entry])
    restarted = Table({k: bytes(v) for k, v in table.items()})  # what a new worker reads back
    stays, [alert], _ = run([crossing("EXIT", 30)], restarted)  # 31 March: one day after the last permitted
    assert stays[entry.event_id]["overstay_days"] == 1 and alert.evidence_event_ids[0] == entry.event_id


def test_erase_deletes_the_travellers_stays_only() -> None:
    _, _, table = run([crossing("ENTRY", 0), crossing("ENTRY", 0, who="T2")])
    erase = Fact(key="doc:T1", role="ERASE", event_id="erasure-1", occurred_at=T0, traveller="T1")
    apply_batch([erase], table.load, table.store, RULES, "ops-test")
    assert set(table) == {"doc:T2"}


def test_rows_fit_the_stays_table() -> None:
    stays, _, _ = run([crossing("ENTRY", 0), crossing("EXIT", 40)])
    row = row_for_table(next(iter(stays.values())), T0)
    migration = (Path(__file__).resolve().parents[2] / "streams" / "ops" / "migrations" / "0006_stays.sql").read_text()
    columns = migration.split("CREATE TABLE IF NOT EXISTS stays\n(", 1)[1].split("\n)\n", 1)[0]
    assert set(row) == {line.split()[0] for line in columns.strip().splitlines()}
    assert row["entry_at"] == T0 and row["last_permitted_day"].isoformat() == "2026-03-30"


def test_a_bad_rules_file_names_the_rule_and_key(tmp_path: Path) -> None:
    path = tmp_path / "stays.toml"
    path.write_text('version = "x"\n[alert]\nversion = 1\nseverity = "LOW"\nseverity_long = "MEDIUM"\n'
                    'long_after_days = 90\nindicators = ["I"]\n[[stay]]\nid = "a"\ncountry = "IDN"\n'
                    'visa_types = [""]\n')
    with pytest.raises(StayRulesError, match="stay rule a: missing key 'days'"):
        load_stay_rules(path)
    path.write_text(path.read_text() + "days = 0\n")
    with pytest.raises(StayRulesError, match="stay rule a: days must be"):
        load_stay_rules(path)
