"""Overstay: each traveller's entries and exits paired into stays, each stay judged against its stay rule.

Entry/exit systems (the EU's EES among them) compute how long a visitor stayed and
flag overstays; Lintas does it on the stream. The traveller's own facts (role
``SELF``, keyed ``doc:<document token>``) reach the rule agent on one partition, so
the agent keeps one :class:`StayState` per traveller in a changelog-backed Faust
table: an entry opens a stay in the post's country, the next exit from that country
closes it, and a worker restarted in between reads the open stay back.

:func:`apply` is pure: one fact and its traveller's state in; the new state, the
``stays`` rows and any alert out. Deterministic and idempotent like the trafficking
rules: a fact already applied re-sends what it produced and changes nothing.

What it records (``stays`` table, status):

``open``
    entered, no exit yet. Whether it is past its permitted days is a question of
    *now*, so ClickHouse answers it (the ``overstays`` view compares the last
    permitted day with today) rather than a timer in every worker.
``closed``
    entered and left; ``overstay_days`` > 0 when the exit came after the last
    permitted day. That is also an alert for an officer: an overstay is a fact about
    a stay, not about why. A long one is more often a withheld passport, debt or
    unpaid wages than a choice, so the alert asks for screening, never a sanction.
``no_exit_recorded``
    a new entry into the same country while a stay was open: the exit was not
    recorded (an unstaffed crossing, a data gap); no days are judged.
``exit_without_entry``
    an exit with no open stay (entered before Lintas, or through a crossing it
    does not see).

Refused crossings do not count (no one entered or left); nationals of the country
are not on a stay; a stay with no matching rule is recorded but never judged.
"""

from __future__ import annotations

import functools
import hashlib
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from agents.trafficking.config import SEVERITY_RANK
from agents.trafficking.engine import Alert
from agents.trafficking.facts import Fact
from schemas.errors import LintasError
from schemas.wire import json_bytes

RULES_FILE = Path(__file__).resolve().parent / "stay_rules.toml"
RULE_ID = "overstay"
RECENT = 4  # latest facts whose output a replay can re-send


class StayRulesError(LintasError):
    """The stay rules file is missing, unreadable or incomplete; names the rule and key."""

    code = "stay_rules_invalid"


@dataclass(frozen=True)
class StayRule:
    """How long one kind of visitor may stay in one country."""

    rule_id: str
    country: str  # "*": any
    visa_types: frozenset[str]
    nationalities: frozenset[str] | None  # None: any
    days: int

    def matches(self, country: str, nationality: str, visa_type: str) -> bool:
        """Whether this rule covers that visitor."""
        return (self.country in ("*", country) and visa_type in self.visa_types
                and (self.nationalities is None or nationality in self.nationalities))


@dataclass(frozen=True)
class StayRules:
    """Every stay rule of one file, the alert's settings and the file's version."""

    version: str
    rules: tuple[StayRule, ...]
    alert_version: int
    severity: str
    severity_long: str
    long_after_days: int
    indicators: tuple[str, ...]

    @functools.lru_cache(maxsize=8192)  # noqa: B019 - rule sets are few and live as long as the worker
    def rule_for(self, country: str, nationality: str, visa_type: str) -> StayRule | None:
        """The first rule covering that visitor, or ``None``."""
        return next((r for r in self.rules if r.matches(country, nationality, visa_type)), None)


def load_stay_rules(path: Path | None = None) -> StayRules:
    """Parse and check a stay rules file (default: the one next to this module)."""
    path = path or RULES_FILE
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise StayRulesError(f"stay rules file {path}: {err}") from err
    alert = raw.get("alert", {})
    for key in ("version", "severity", "severity_long", "long_after_days", "indicators"):
        if key not in alert:
            raise StayRulesError(f"stay rules file {path}: [alert] missing key {key!r}")
    for key in ("severity", "severity_long"):
        if alert[key] not in SEVERITY_RANK:
            raise StayRulesError(f"stay rules file {path}: [alert] {key} must be one of {sorted(SEVERITY_RANK)}")
    if not raw.get("version"):
        raise StayRulesError(f"stay rules file {path}: missing top-level 'version'")
    rules, ids = [], set()
    for n, stay in enumerate(raw.get("stay", [])):
        name = stay.get("id", f"#{n}")
        for key in ("id", "country", "visa_types", "days"):
            if key not in stay:
                raise StayRulesError(f"stay rule {name}: missing key {key!r}")
        if not isinstance(stay["days"], int) or not 0 < stay["days"] <= 3650:
            raise StayRulesError(f"stay rule {name}: days must be a whole number from 1 to 3650")
        if name in ids:
            raise StayRulesError(f"stay rule {name}: defined twice")
        ids.add(name)
        nationalities = stay.get("nationalities")
        rules.append(StayRule(name, stay["country"], frozenset(stay["visa_types"]),
                              frozenset(nationalities) if nationalities is not None else None, stay["days"]))
    if not rules:
        raise StayRulesError(f"stay rules file {path}: no [[stay]] rule")
    return StayRules(str(raw["version"]), tuple(rules), int(alert["version"]), alert["severity"],
                     alert["severity_long"], int(alert["long_after_days"]), tuple(alert["indicators"]))


@dataclass
class StayState:
    """One traveller's open stays (by country) and what their latest facts produced; JSON in the changelog."""

    open: dict[str, dict[str, Any]] = field(default_factory=dict)
    recent: list[list[Any]] = field(default_factory=list)  # [event id, rows], newest last

    def to_bytes(self) -> bytes:
        """Compact JSON."""
        return json_bytes({"open": self.open, "recent": self.recent})

    @classmethod
    def from_bytes(cls, data: bytes | None) -> StayState:
        """The state stored by :meth:`to_bytes`, or a fresh one."""
        return cls(**orjson.loads(data)) if data else cls()


def last_permitted_day(entry: datetime, days: int) -> date:
    """The last day of a stay of ``days`` entered at ``entry`` (the day of entry is day 1; UTC dates)."""
    return entry.astimezone(UTC).date() + timedelta(days=days - 1)


def apply(fact: Fact, state: StayState, rules: StayRules, key_id: str) -> tuple[StayState, list[dict[str, Any]]]:
    """One traveller fact through the pairing: the new state and the ``stays`` rows it produced.

    Only the traveller's own, not refused, crossings count; a fact already applied
    returns its rows again (a replay after a crash) and changes nothing.
    """
    if fact.role != "SELF" or fact.refused or fact.direction not in ("ENTRY", "EXIT"):
        return state, []
    for event_id, produced in state.recent:
        if event_id == fact.event_id:
            return state, produced
    country = fact.post_country
    rows: list[dict[str, Any]] = []
    if fact.nationality != country:
        stay = state.open.pop(country, None)
        if fact.direction == "ENTRY":
            if stay is not None:
                rows.append({**stay, "status": "no_exit_recorded", "version": 2})
            rule = rules.rule_for(country, fact.nationality, fact.visa_type)
            opened = {
                "stay_id": fact.event_id, "traveller_token": fact.traveller, "country": country,
                "nationality": fact.nationality, "visa_type": fact.visa_type,
                "rule_id": rule.rule_id if rule else "", "allowed_days": rule.days if rule else 0,
                "entry_event_id": fact.event_id, "entry_post": fact.post_id, "entry_at": fact.ms,
                "last_permitted_day": last_permitted_day(fact.occurred_at, rule.days).isoformat() if rule else None,
                "exit_event_id": "", "exit_post": "", "exit_at": None, "status": "open", "overstay_days": 0,
                "rules_version": rules.version, "key_id": key_id, "version": 1,
            }
            state.open[country] = opened
            rows.append(opened)
        elif stay is not None and fact.ms >= stay["entry_at"]:
            last = stay["last_permitted_day"]
            over = max(0, (fact.occurred_at.astimezone(UTC).date() - date.fromisoformat(last)).days) if last else 0
            rows.append({**stay, "exit_event_id": fact.event_id, "exit_post": fact.post_id, "exit_at": fact.ms,
                         "status": "closed", "overstay_days": over, "version": 2})
        else:
            if stay is not None:  # an exit before the open stay's entry (late data): leave the stay open
                state.open[country] = stay
            rows.append({
                "stay_id": fact.event_id, "traveller_token": fact.traveller, "country": country,
                "nationality": fact.nationality, "visa_type": fact.visa_type, "rule_id": "", "allowed_days": 0,
                "entry_event_id": "", "entry_post": "", "entry_at": None, "last_permitted_day": None,
                "exit_event_id": fact.event_id, "exit_post": fact.post_id, "exit_at": fact.ms,
                "status": "exit_without_entry", "overstay_days": 0, "rules_version": rules.version,
                "key_id": key_id, "version": 2,
            })
    state.recent = [*state.recent, [fact.event_id, rows]][-RECENT:]
    return state, rows


def overstay_alert(row: dict[str, Any], rules: StayRules) -> Alert | None:
    """The officer's alert for a stay closed after its last permitted day; ``None`` otherwise."""
    if row["status"] != "closed" or row["overstay_days"] <= 0:
        return None
    days = row["overstay_days"]
    severity = rules.severity_long if days > rules.long_after_days else rules.severity
    entry, exit_ = _dt(row["entry_at"]), _dt(row["exit_at"])
    explanation = (f"Left {row['country']} at {row['exit_post']} {days} day(s) after the last permitted day "
                   f"{row['last_permitted_day']}: entered at {row['entry_post']} on {entry:%Y-%m-%d} under stay rule "
                   f"{row['rule_id']} ({row['allowed_days']} days, nationality {row['nationality']}, visa "
                   f"{row['visa_type'] or 'none'}). Extensions granted in the country are not visible here; a long "
                   "overstay can follow a withheld passport, debt or unpaid wages: screen before any sanction.")
    return Alert(
        alert_id="O" + hashlib.sha256(f"{RULE_ID}\x1f{row['stay_id']}".encode()).hexdigest()[:31],
        rule_id=RULE_ID, rule_version=rules.alert_version, rules_version=row["rules_version"],
        indicators=rules.indicators, severity=severity, key_kind="doc", key_token=row["traveller_token"],
        subjects=(row["traveller_token"],), evidence_event_ids=(row["entry_event_id"], row["exit_event_id"]),
        post_ids=tuple(sorted({row["entry_post"], row["exit_post"]})), explanation=explanation,
        features={"allowed_days": float(row["allowed_days"]), "overstay_days": float(days),
                  "stay_days": round((exit_ - entry).total_seconds() / 86400, 2)},
        first_seen=entry, last_seen=exit_,
    )


def apply_batch(facts: Sequence[Fact], load: Callable[[str], StayState], store: Callable[[str, StayState | None], None],
                rules: StayRules, key_id: str) -> tuple[list[dict[str, Any]], list[Alert]]:
    """What the rule agent does with a batch: each fact through :func:`apply`; an ERASE fact deletes the state."""
    rows: list[dict[str, Any]] = []
    for fact in facts:
        if fact.role == "ERASE":
            if fact.key.partition(":")[2] == fact.traveller:
                store(fact.key, None)
            continue
        if fact.role != "SELF":
            continue
        state, out = apply(fact, load(fact.key), rules, key_id)
        if out:
            store(fact.key, state)
            rows += out
    latest = {r["stay_id"]: r for r in sorted(rows, key=lambda r: r["version"])}  # one row per stay per batch
    alerts = [a for r in latest.values() if (a := overstay_alert(r, rules)) is not None]
    return list(latest.values()), alerts


def row_for_table(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A stay row as the ``stays`` table takes it (times as datetimes)."""
    out = {**row, "entry_at": _dt(row["entry_at"]) if row["entry_at"] is not None else None,
           "exit_at": _dt(row["exit_at"]) if row["exit_at"] is not None else None,
           "last_permitted_day": date.fromisoformat(row["last_permitted_day"]) if row["last_permitted_day"] else None,
           "updated_at": now}
    return out


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
