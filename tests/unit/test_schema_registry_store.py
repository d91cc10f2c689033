"""The registry's store and compatibility rules, without HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.schema_registry import RegistryError, Store, parse_avro
from schemas.compatibility import incompatibilities


def _record(*fields: dict) -> str:
    return json.dumps({"type": "record", "name": "Probe", "namespace": "id.lintas.test", "fields": list(fields)})


V1 = _record({"name": "a", "type": "string"})
V2_OPTIONAL = _record({"name": "a", "type": "string"}, {"name": "b", "type": ["null", "int"], "default": None})
V2_REQUIRED = _record({"name": "a", "type": "string"}, {"name": "b", "type": "int"})
V3_DROP_A = _record({"name": "b", "type": ["null", "int"], "default": None})


@pytest.mark.parametrize(
    ("level", "new", "compatible"),
    [
        ("BACKWARD", V2_OPTIONAL, True),
        ("BACKWARD", V2_REQUIRED, False),   # new reader has no default for b
        ("FORWARD", V2_REQUIRED, True),     # old reader ignores b
        ("FULL", V2_OPTIONAL, True),
        ("FULL", V2_REQUIRED, False),
        ("NONE", V2_REQUIRED, True),
    ],
)
def test_levels_against_one_previous_version(level: str, new: str, compatible: bool) -> None:
    assert (not incompatibilities(parse_avro(new), [parse_avro(V1)], level)) is compatible


def test_transitive_checks_every_earlier_version() -> None:
    history = [parse_avro(V1), parse_avro(V2_OPTIONAL)]
    # Dropping a (no default) breaks forward compatibility with V1 and V2, where a is required.
    assert incompatibilities(parse_avro(V3_DROP_A), history, "FULL_TRANSITIVE")
    assert incompatibilities(parse_avro(V3_DROP_A), history[-1:], "BACKWARD") == []


def test_register_is_idempotent_and_ids_are_global(tmp_path: Path) -> None:
    store = Store(tmp_path / "r.sqlite")
    first = store.register("a-value", V1, "AVRO")
    assert store.register("a-value", json.dumps(json.loads(V1), indent=4), "AVRO") == first  # same schema, new spacing
    assert store.register("b-value", V1, "AVRO") == first  # another subject shares the id
    assert store.versions("a-value") == [1]
    second = store.register("a-value", V2_OPTIONAL, "AVRO")
    assert second != first and store.versions("a-value") == [1, 2]
    assert store.version("a-value", "latest")["id"] == second
    assert store.lookup("a-value", V1)["version"] == 1


def test_incompatible_registration_is_refused_with_409(tmp_path: Path) -> None:
    store = Store(tmp_path / "r.sqlite")
    store.set_compatibility("s-value", "FULL_TRANSITIVE")
    store.register("s-value", V1, "AVRO")
    with pytest.raises(RegistryError) as err:
        store.register("s-value", V2_REQUIRED, "AVRO")
    assert err.value.status == 409
    assert store.versions("s-value") == [1]


def test_errors_use_confluent_codes(tmp_path: Path) -> None:
    store = Store(tmp_path / "r.sqlite")
    for call, code in [
        (lambda: store.versions("nope"), 40401),
        (lambda: store.schema_by_id(99), 40403),
        (lambda: store.register("x", "{not json", "AVRO"), 42201),
        (lambda: store.set_compatibility(None, "SOMETIMES"), 42203),
        (lambda: store.register("x", V1, "PROTOBUF"), 42201),
    ]:
        with pytest.raises(RegistryError) as err:
            call()
        assert err.value.error_code == code


def test_deleted_subject_keeps_its_ids_resolvable(tmp_path: Path) -> None:
    store = Store(tmp_path / "r.sqlite")
    sid = store.register("d-value", V1, "AVRO")
    assert store.delete("d-value", None) == [1]
    assert "d-value" not in store.subjects()
    assert json.loads(store.schema_by_id(sid)["schema"])["name"] == "Probe"


def test_ids_survive_reopening(tmp_path: Path) -> None:
    store = Store(tmp_path / "r.sqlite")
    sid = store.register("p-value", V1, "AVRO")
    store.close()
    again = Store(tmp_path / "r.sqlite")
    assert again.register("p-value", V1, "AVRO") == sid
    assert again.register("q-value", V2_OPTIONAL, "AVRO") == sid + 1
