"""The privacy policy: every field has a transformation, the row builders apply it, every store has a retention."""

from __future__ import annotations

import re
import tomllib
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agents.keys import Purposes
from agents.privacy import POLICY_FILE, PrivacyPolicyError, load_policy, parse_policy, policy
from agents.pseudonymise import Tokeniser, crossing_row, landing_row
from agents.trafficking.facts import crossing_facts, landing_facts
from schemas.contracts import CROSSING_EVENT, EVENT_CONTRACTS, LANDING_EVENT, Contract
from streams.ops.migrate import MIGRATIONS
from streams.sim.simulator import Simulator
from streams.topics import ALL_TOPICS

TOK = Tokeniser(b"unit-test-key-not-a-secret-00002", "test")
STRICTNESS = {"keep": 0, "generalise": 1, "token": 1, "drop": 2}


@pytest.mark.parametrize("contract", EVENT_CONTRACTS.values(), ids=lambda c: c.name)
def test_every_field_has_one_transformation(contract: Contract) -> None:
    pol, tags_of = policy(), contract.field_tags()
    containers = {p.rsplit(".", 1)[0] for p in tags_of if "." in p} | {p[: p.index("[]")] for p in tags_of if "[]" in p}
    for path, tags in tags_of.items():
        if path in containers:
            continue  # a record or array: its fields carry the classes
        assert pol.transform(tags) in {"drop", "token", "generalise", "keep"}, f"{contract.name}.{path}"


def test_a_field_without_a_class_fails() -> None:
    with pytest.raises(PrivacyPolicyError, match="no data class"):
        policy().transform(("PII",))


def _leaves(value: Any, path: str = "") -> list[tuple[str, Any]]:
    """(schema path, value) of every leaf of a decoded record, in the contract's path notation."""
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(v, f"{path}.{k}" if path else k)]
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [leaf for item in value for leaf in _leaves(item, f"{path}[]")]
    return [(path, value)]


def _clear(value: Any) -> list[str]:
    """How a clear value could show up in a row."""
    if isinstance(value, date | datetime):
        return [value.isoformat()[:10]]
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def _row_text(row: dict[str, Any]) -> str:
    return "\x1f".join(repr(v) if not isinstance(v, date | datetime) else v.isoformat() for v in row.values())


@pytest.mark.parametrize(("contract", "builder"), [(CROSSING_EVENT, crossing_row), (LANDING_EVENT, landing_row)],
                         ids=["crossing", "landing"])
def test_rows_apply_at_least_the_policy(contract: Contract, builder: Any) -> None:
    """No field the policy drops, tokenises or generalises appears in clear in an analytics row or a fact."""
    pol, tags = policy(), contract.field_tags()
    sim = Simulator(seed=11, dim=8, end=datetime(2026, 11, 20, tzinfo=UTC), population=400)
    records = [r for kind, r in sim.events(3000, landings=6) if kind == contract.name.removesuffix("Event").lower()]
    checked: set[str] = set()
    for record in records:
        row = builder(record, TOK)
        facts = (crossing_facts(record, row, TOK) if contract is CROSSING_EVENT else landing_facts(record, row, TOK))
        text = _row_text(row) + "".join(repr(f) for f in facts)
        for path, value in _leaves(record):
            field = re.sub(r"^persons\[\]\.traveller\.", "traveller.", path)
            field_tags = tags.get(path) or tags.get(field) or ()
            if value in (None, "", []) or not field_tags or STRICTNESS[pol.transform(field_tags)] == 0:
                continue
            if isinstance(value, bool | int | float):
                continue  # a flag or a small number is not a finding
            if isinstance(value, np.ndarray | bytes) or path.endswith("template"):
                assert "template" not in row and all("template" not in k for k in row), path
                continue
            for clear in _clear(value):
                if len(clear) >= 4:
                    assert clear not in text, f"{contract.name}.{path} ({pol.transform(field_tags)}) in clear"
                    checked.add(path)
    assert {"traveller.document.number", "traveller.given_names", "traveller.date_of_birth"} & checked or \
        contract is LANDING_EVENT


def test_every_clickhouse_table_and_topic_has_a_retention_class() -> None:
    pol = policy()
    created = {m for path in MIGRATIONS.glob("*.sql")
               for m in re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", path.read_text())}
    renamed = {old for path in MIGRATIONS.glob("*.sql")  # a table built under another name, then renamed
               for old, _ in re.findall(r"RENAME TABLE (\w+) TO (\w+)", path.read_text())}
    created -= renamed
    assert created - set(pol.tables) == set(), "tables without a retention class"
    assert set(pol.tables) - created == set(), "retention for tables that do not exist"
    for topic in ALL_TOPICS:
        assert topic.retention in pol.retention, topic.name
        assert topic.restricted or topic.retention != "personal_clear", f"{topic.name}: clear data, not restricted"
    assert {t.name for t in ALL_TOPICS if t.restricted} >= {"crossing_events", "landing_events"}


def test_policy_errors_name_the_entry(tmp_path: Path) -> None:
    raw = tomllib.loads(POLICY_FILE.read_text())
    assert load_policy().version == raw["version"]
    bad = {**raw, "classes": {**raw["classes"], "BIOMETRIC": {**raw["classes"]["BIOMETRIC"], "transform": "blur"}}}
    with pytest.raises(PrivacyPolicyError, match="classes.BIOMETRIC.transform: 'blur'"):
        parse_policy(bad)
    with pytest.raises(PrivacyPolicyError, match="regional_export: missing 'k'"):
        parse_policy({**raw, "regional_export": {"adequate": []}})
    with pytest.raises(PrivacyPolicyError, match="unknown retention class 'forever'"):
        parse_policy({**raw, "retention": {**raw["retention"], "tables": {"x": {"class": "forever", "column": "t"}}}})


def test_specific_personal_data_per_law_27_2022() -> None:
    assert {c.name for c in policy().classes.values() if c.specific} == {"BIOMETRIC", "CHILD", "CRIME_RECORD"}


def test_purposes_tokenise_apart() -> None:
    keys = Purposes(Tokeniser(b"o" * 32, "operations-1"), Tokeniser(b"a" * 32, "analytics-1"),
                    Tokeniser(b"r" * 32, "regional-1"))
    record = next(r for kind, r in Simulator(seed=3, dim=8, population=50).events(20, 0) if kind == "crossing")
    row, facts = crossing_row(record, keys.analytics), crossing_facts(record, crossing_row(record, keys.analytics),
                                                                       keys.operations)
    assert row["document_token"] not in {f.key.split(":", 1)[1] for f in facts}
    assert row["key_id"] == "analytics-1"
