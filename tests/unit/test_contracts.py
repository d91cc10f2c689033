"""The event contracts: tags on every field, the evolution policy over the frozen history."""

from __future__ import annotations

import json

import fastavro
import pytest

from schemas.contracts import COMPATIBILITY, DATA_CLASSES, EVENT_CONTRACTS, TAGS, Contract, history
from schemas.evolution import history_problems, pending_change


@pytest.mark.parametrize("contract", EVENT_CONTRACTS.values(), ids=lambda c: c.name)
def test_every_leaf_field_has_exactly_one_data_class(contract: Contract) -> None:
    tags = contract.field_tags()
    containers = {path.rsplit(".", 1)[0] for path in tags if "." in path} | {
        path[: path.index("[]")] for path in tags if "[]" in path
    }
    for path, field_tags in tags.items():
        assert set(field_tags) <= TAGS, f"{path}: unknown tags {set(field_tags) - TAGS}"
        if path in containers:
            continue
        classes = set(field_tags) & DATA_CLASSES
        assert classes, f"{contract.name}.{path} has no data-class tag"
        assert len(classes - {"CHILD"}) == 1 or classes == {"CHILD"}, f"{contract.name}.{path}: {classes}"
        if classes != {"PUBLIC"}:
            assert "PII" in field_tags or classes == {"QUASI_IDENTIFIER"}, f"{path} is personal but not PII-tagged"


@pytest.mark.parametrize("contract", EVENT_CONTRACTS.values(), ids=lambda c: c.name)
def test_every_field_is_documented(contract: Contract) -> None:
    def walk(node: object, path: str) -> None:
        if isinstance(node, dict) and node.get("type") == "record":
            assert node.get("doc"), f"record {path or node['name']} has no doc"
            for f in node["fields"]:
                assert f.get("doc"), f"{contract.name}.{path}{f['name']} has no doc"
                walk(f["type"], f"{path}{f['name']}.")
        elif isinstance(node, dict):
            for key in ("type", "items", "values"):
                walk(node.get(key), path)
        elif isinstance(node, list):
            for branch in node:
                walk(branch, path)

    walk(contract.schema, "")


@pytest.mark.parametrize("name", EVENT_CONTRACTS)
def test_history_keeps_the_evolution_policy(name: str) -> None:
    versions = history(name)
    assert versions, f"{name} has no frozen version: run `lintas schemas freeze`"
    assert history_problems(versions) == []


@pytest.mark.parametrize("contract", EVENT_CONTRACTS.values(), ids=lambda c: c.name)
def test_current_schema_is_frozen(contract: Contract) -> None:
    assert not pending_change(contract), (
        f"{contract.name} changed since its last frozen version: run `lintas schemas freeze` "
        f"(it refuses changes that break {COMPATIBILITY})"
    )


def test_policy_catches_a_breaking_change() -> None:
    """The check can fail: a required field added without default breaks FULL_TRANSITIVE."""
    v1 = history("CrossingEvent")[-1]
    broken = json.loads(json.dumps(v1))
    broken["fields"].append({"name": "new_required", "type": "string"})
    assert history_problems([v1, broken])
    compatible = json.loads(json.dumps(v1))
    compatible["fields"].append({"name": "new_optional", "type": ["null", "string"], "default": None})
    assert history_problems([v1, compatible]) == []


def test_shared_types_are_inlined_once() -> None:
    landing = EVENT_CONTRACTS["LandingEvent"].schema_str
    assert landing.count('"name":"Traveller"') == 1
    fastavro.parse_schema(json.loads(landing))  # self-contained: parses without the types directory
