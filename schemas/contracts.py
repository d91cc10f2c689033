"""The event contracts: Avro schemas in ``schemas/``, parsed once at import.

Source files: named types shared by several events live in ``schemas/types/``,
events in ``schemas/events/``. Each event is expanded into one self-contained
schema (what the registry stores and readers need). Every released version is
frozen in ``schemas/history/<Event>/v<N>.avsc``; the evolution policy
(:data:`COMPATIBILITY`) is enforced over that history by the tests and by
``lintas schemas freeze``.

Personal-data classes are tags on the fields themselves (``"confluent:tags"``),
so pseudonymisation follows the schema rather than a second hand-kept list.
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import avro.schema
import fastavro

from schemas import __file__ as _package_file

ROOT = Path(_package_file).resolve().parent
TYPES_DIR = ROOT / "types"
EVENTS_DIR = ROOT / "events"
HISTORY_DIR = ROOT / "history"
INTERNAL_DIR = ROOT / "internal"
NAMESPACE = "id.lintas.events"

# Every reader and writer of any version can read every other version: posts
# upgrade on their own schedule and old records stay readable for the retention.
COMPATIBILITY = "FULL_TRANSITIVE"

# The personal-data classes a field may carry; PII marks every field about a person.
DATA_CLASSES = frozenset({
    "PUBLIC", "QUASI_IDENTIFIER", "DIRECT_IDENTIFIER", "BIOMETRIC", "CHILD", "CRIME_RECORD", "FREE_TEXT",
    "PSEUDONYMOUS",  # a keyed token or pseudonymous id: not reversible without the key
})
TAGS = DATA_CLASSES | {"PII"}


@dataclass(frozen=True)
class Contract:
    """One event type: its self-contained schema, parsed for fastavro."""

    name: str
    schema: dict[str, Any]
    parsed: Any

    @property
    def fullname(self) -> str:
        """Avro full name, e.g. ``id.lintas.events.CrossingEvent``."""
        return f"{self.schema.get('namespace', NAMESPACE)}.{self.name}"

    @property
    def schema_str(self) -> str:
        """The schema as registered (compact JSON)."""
        return json.dumps(self.schema, separators=(",", ":"))

    @property
    def canonical_form(self) -> str:
        """Avro Parsing Canonical Form: equal for schemas that read and write alike."""
        return str(avro.schema.parse(self.schema_str).canonical_form)

    @functools.cached_property
    def uuid_fields(self) -> tuple[str, ...]:
        """Top-level fields with the uuid logical type (fastavro reads them as UUID objects)."""
        return tuple(f["name"] for f in self.schema["fields"]
                     if isinstance(f["type"], dict) and f["type"].get("logicalType") == "uuid")

    def field_tags(self) -> dict[str, tuple[str, ...]]:
        """Dotted field path → tags, for every field of the schema (records inside unions and arrays too)."""
        return field_tags(self.schema)


def _load_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _named_types() -> dict[str, dict[str, Any]]:
    types = {}
    for path in sorted(TYPES_DIR.glob("*.avsc")):
        schema = _load_json(path)
        types[f"{schema.get('namespace', NAMESPACE)}.{schema['name']}"] = schema
    return types


def expand(schema: Any, types: dict[str, dict[str, Any]], defined: set[str] | None = None) -> Any:
    """Inline every reference to a shared named type at its first use; later uses stay references."""
    defined = set() if defined is None else defined
    if isinstance(schema, str):
        if schema in types and schema not in defined:
            return expand(copy.deepcopy(types[schema]), types, defined)
        return schema
    if isinstance(schema, list):
        return [expand(branch, types, defined) for branch in schema]
    if isinstance(schema, dict):
        out = dict(schema)
        kind = out.get("type")
        if kind in ("record", "enum", "fixed"):
            defined.add(f"{out.get('namespace', NAMESPACE)}.{out['name']}")
        if kind == "record":
            out["fields"] = [{**f, "type": expand(f["type"], types, defined)} for f in out["fields"]]
        elif kind == "array":
            out["items"] = expand(out["items"], types, defined)
        elif kind == "map":
            out["values"] = expand(out["values"], types, defined)
        elif isinstance(kind, (dict, list)) or (isinstance(kind, str) and kind in types):
            out["type"] = expand(kind, types, defined)
        return out
    return schema


def field_tags(schema: dict[str, Any], prefix: str = "") -> dict[str, tuple[str, ...]]:
    """Dotted path → ``confluent:tags`` of every field, walking nested records, unions and arrays."""
    out: dict[str, tuple[str, ...]] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, list):
            for branch in node:
                walk(branch, path)
        elif isinstance(node, dict):
            if node.get("type") == "record":
                for f in node["fields"]:
                    child = f"{path}.{f['name']}" if path else f["name"]
                    out[child] = tuple(f.get("confluent:tags", ()))
                    walk(f["type"], child)
            elif node.get("type") == "array":
                walk(node["items"], f"{path}[]")
            elif node.get("type") == "map":
                walk(node["values"], f"{path}{{}}")
            elif isinstance(node.get("type"), (dict, list)):
                walk(node["type"], path)

    walk(schema, prefix)
    return out


def load_contract(name: str) -> Contract:
    """Expand and parse one event schema from ``schemas/events/<name>.avsc``."""
    schema = expand(_load_json(EVENTS_DIR / f"{name}.avsc"), _named_types())
    return Contract(name=name, schema=schema, parsed=fastavro.parse_schema(copy.deepcopy(schema)))


def history(name: str) -> list[dict[str, Any]]:
    """Frozen versions of an event's schema, oldest first."""
    paths = sorted((HISTORY_DIR / name).glob("v*.avsc"), key=lambda p: int(p.stem[1:]))
    return [_load_json(p) for p in paths]


def internal_schema(name: str, named: dict[str, Any] | None = None) -> Any:
    """A parsed (fastavro) schema of a record only the pipeline reads (``schemas/internal/``, no registry)."""
    return fastavro.parse_schema(_load_json(INTERNAL_DIR / f"{name}.avsc"), named)


CROSSING_EVENT = load_contract("CrossingEvent")
LANDING_EVENT = load_contract("LandingEvent")
DEAD_LETTER = load_contract("DeadLetter")
IDENTITY_LINK = load_contract("IdentityLink")
ADJUDICATION_DECISION = load_contract("AdjudicationDecision")
ALERT = load_contract("Alert")
REVIEW_DECISION = load_contract("ReviewDecision")
EVENT_CONTRACTS: dict[str, Contract] = {c.name: c for c in (CROSSING_EVENT, LANDING_EVENT, DEAD_LETTER, IDENTITY_LINK,
                                                             ADJUDICATION_DECISION, ALERT,
                                                             REVIEW_DECISION)}
