"""The data-protection policy (``schemas/privacy_policy.toml``), loaded and checked once.

One file says, for every data class a schema field can carry, which transformation
it gets on its way out of the restricted input topics; which purposes exist (each
with its own pseudonymisation keys, :mod:`agents.keys`); how long each class of
store keeps data; and the rules of regional sharing. Code reads the policy from
here and nowhere else; every audit record names the policy version.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.errors import LintasError

POLICY_FILE = Path(__file__).resolve().parent.parent / "schemas" / "privacy_policy.toml"
TRANSFORMS = frozenset({"drop", "token", "generalise", "keep"})
ROTATIONS = frozenset({"online", "migration"})
DAY_MS = 24 * 60 * 60 * 1000


class PrivacyPolicyError(LintasError):
    """The policy file is incomplete or inconsistent (names the entry and the reason)."""

    code = "policy_error"


@dataclass(frozen=True)
class DataClass:
    """One schema tag: its transformation and whether the law counts it as specific personal data."""

    name: str
    transform: str
    specific: bool
    doc: str


@dataclass(frozen=True)
class Purpose:
    """A purpose of processing; tokens of one purpose never join those of another."""

    name: str
    doc: str
    rotation: str


@dataclass(frozen=True)
class Retention:
    """How long a class of store keeps data; ``days=-1`` until erased."""

    name: str
    days: int
    doc: str

    @property
    def ms(self) -> int:
        """Kafka ``retention.ms`` (-1 for unlimited)."""
        return -1 if self.days < 0 else self.days * DAY_MS


@dataclass(frozen=True)
class Policy:
    """The whole policy file, validated."""

    version: str
    precedence: tuple[str, ...]
    classes: dict[str, DataClass]
    purposes: dict[str, Purpose]
    retention: dict[str, Retention]
    tables: dict[str, tuple[str, str]]  # ClickHouse table → (retention class, time column)
    export_k: int
    adequate: frozenset[str]

    def data_class(self, tags: tuple[str, ...] | list[str]) -> DataClass:
        """The class that decides a field's treatment: the first of its tags in :attr:`precedence`."""
        for name in self.precedence:
            if name in tags:
                return self.classes[name]
        raise PrivacyPolicyError(f"no data class among tags {sorted(tags)}")

    def transform(self, tags: tuple[str, ...] | list[str]) -> str:
        """The one transformation of a field with these tags."""
        return self.data_class(tags).transform

    def ttl(self, table: str) -> tuple[str, int]:
        """A ClickHouse table's TTL column and days; :class:`PrivacyPolicyError` if the policy does not name it."""
        if table not in self.tables:
            raise PrivacyPolicyError(f"table {table!r} has no retention class in the policy")
        cls, column = self.tables[table]
        return column, self.retention[cls].days


def _need(entry: dict[str, Any], key: str, where: str) -> Any:
    if key not in entry:
        raise PrivacyPolicyError(f"{where}: missing {key!r}")
    return entry[key]


def parse_policy(raw: dict[str, Any]) -> Policy:
    """Validate a parsed policy file; :class:`PrivacyPolicyError` names the first bad entry."""
    classes = {}
    for name, entry in _need(raw, "classes", "policy").items():
        transform = _need(entry, "transform", f"classes.{name}")
        if transform not in TRANSFORMS:
            raise PrivacyPolicyError(f"classes.{name}.transform: {transform!r} is not one of {sorted(TRANSFORMS)}")
        classes[name] = DataClass(name, transform, bool(_need(entry, "specific", f"classes.{name}")),
                                  _need(entry, "doc", f"classes.{name}"))
    precedence = tuple(_need(raw, "precedence", "policy"))
    if set(precedence) != set(classes):
        raise PrivacyPolicyError(f"precedence must list every class once: {sorted(set(precedence) ^ set(classes))}")
    purposes = {}
    for name, entry in _need(raw, "purposes", "policy").items():
        rotation = _need(entry, "rotation", f"purposes.{name}")
        if rotation not in ROTATIONS:
            raise PrivacyPolicyError(f"purposes.{name}.rotation: {rotation!r} is not one of {sorted(ROTATIONS)}")
        purposes[name] = Purpose(name, _need(entry, "doc", f"purposes.{name}"), rotation)
    retention_raw = _need(raw, "retention", "policy")
    retention = {name: Retention(name, int(_need(e, "days", f"retention.classes.{name}")),
                                 _need(e, "doc", f"retention.classes.{name}"))
                 for name, e in _need(retention_raw, "classes", "retention").items()}
    tables = {}
    for table, entry in _need(retention_raw, "tables", "retention").items():
        cls = _need(entry, "class", f"retention.tables.{table}")
        if cls not in retention:
            raise PrivacyPolicyError(f"retention.tables.{table}: unknown retention class {cls!r}")
        tables[table] = (cls, _need(entry, "column", f"retention.tables.{table}"))
    export = _need(raw, "regional_export", "policy")
    k = int(_need(export, "k", "regional_export"))
    if k < 2:
        raise PrivacyPolicyError("regional_export.k: must be at least 2")
    return Policy(str(_need(raw, "version", "policy")), precedence, classes, purposes, retention, tables, k,
                  frozenset(_need(export, "adequate", "regional_export")))


def load_policy(path: Path = POLICY_FILE) -> Policy:
    """Read and validate a policy file."""
    with path.open("rb") as f:
        return parse_policy(tomllib.load(f))


@functools.cache
def policy() -> Policy:
    """The project's policy, read once."""
    return load_policy()
