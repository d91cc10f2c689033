"""Validation of border-post JSON: good records pass, each bad one names its field and reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.contracts import CROSSING_EVENT, LANDING_EVENT
from schemas.validation import ValidationError, parse_json_line
from streams.sim.files import to_json_line
from streams.sim.simulator import Simulator

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def samples() -> dict[str, dict[str, Any]]:
    sim = Simulator(seed=11, dim=8, days=0.2, end=NOW, population=50)
    out: dict[str, dict[str, Any]] = {}
    for kind, record in sim.events(200, landings=1):
        if kind == "crossing" and record["biometric"] is not None and record["companions"]:
            out.setdefault("crossing", record)
        elif kind == "landing":
            out.setdefault("landing", record)
    return out


def _line(record: dict[str, Any], **changes: Any) -> str:
    obj = json.loads(to_json_line(record))
    for path, value in changes.items():
        node = obj
        *parents, leaf = path.split("__")
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        if value is KeyError:
            del node[leaf]
        else:
            node[leaf] = value
    return json.dumps(obj)


def test_simulated_records_round_trip(samples: dict[str, dict[str, Any]]) -> None:
    crossing = parse_json_line(_line(samples["crossing"]), CROSSING_EVENT, now=NOW)
    assert crossing == samples["crossing"]
    landing = parse_json_line(_line(samples["landing"]), LANDING_EVENT, now=NOW)
    assert landing == samples["landing"]


@pytest.mark.parametrize(
    ("changes", "field", "code"),
    [
        ({"traveller__document__number": KeyError}, "traveller.document.number", "missing_field"),
        ({"traveller__document__number": 12345}, "traveller.document.number", "invalid_type"),
        ({"direction": "SIDEWAYS"}, "direction", "invalid_enum"),
        ({"occurred_at": "2026-11-20T10:00:00"}, "occurred_at", "naive_timestamp"),
        ({"occurred_at": "yesterday"}, "occurred_at", "invalid_timestamp"),
        ({"occurred_at": "2030-01-01T00:00:00Z"}, "occurred_at", "in_future"),
        ({"event_id": "not-a-uuid"}, "event_id", "invalid_value"),
        ({"post__country": "ID"}, "post.country", "invalid_country"),
        ({"traveller__date_of_birth": "31/12/1990"}, "traveller.date_of_birth", "invalid_date"),
        ({"traveller__document": None}, "traveller.document", "missing_value"),
        ({"biometric__template": "***"}, "biometric.template", "invalid_encoding"),
        ({"biometric__dimension": 9}, "biometric.template", "invalid_template"),
        ({"biometric__quality": 3.5}, "biometric.quality", "out_of_range"),
        ({"companions__0__relationship": "COUSIN"}, "companions[0].relationship", "invalid_enum"),
        ({"refusal_reason": "WATCHLIST_HIT"}, "refusal_reason", "inconsistent"),
        ({"surprise": 1}, "surprise", "unknown_field"),
    ],
)
def test_bad_crossing_names_field_and_reason(samples, changes, field, code) -> None:
    with pytest.raises(ValidationError) as err:
        parse_json_line(_line(samples["crossing"], **changes), CROSSING_EVENT, now=NOW)
    assert (field, code) in {(e.field, e.code) for e in err.value.errors}, err.value.errors


def test_errors_never_echo_personal_values(samples) -> None:
    planted_number = "Z9999999"
    with pytest.raises(ValidationError) as err:
        parse_json_line(_line(samples["crossing"], traveller__document__number=[planted_number]), CROSSING_EVENT, now=NOW)
    assert planted_number not in str(err.value)


@pytest.mark.parametrize(
    ("changes", "field", "code"),
    [
        ({"unaccompanied_minors": 99}, "unaccompanied_minors", "inconsistent"),
        ({"adults": -1}, "adults", "out_of_range"),
        ({"site__latitude": 123.0}, "site", "out_of_range"),
        ({"nationalities": ["Rohingya"]}, "nationalities[0]", "invalid_country"),
    ],
)
def test_bad_landing_names_field_and_reason(samples, changes, field, code) -> None:
    with pytest.raises(ValidationError) as err:
        parse_json_line(_line(samples["landing"], **changes), LANDING_EVENT, now=NOW)
    assert (field, code) in {(e.field, e.code) for e in err.value.errors}


@pytest.mark.parametrize("line", ["{", "[1, 2]", "null"])
def test_not_an_object(line: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_json_line(line, CROSSING_EVENT, now=NOW)
    assert err.value.errors[0].code == "malformed_json"
