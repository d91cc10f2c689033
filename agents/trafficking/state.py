"""What the rules remember about one key, within the longest window: named entries, stored as JSON lists.

Each entry is a ``NamedTuple``, so the rules read ``e.direction``, not ``e[4]``, while the
changelog keeps the same compact JSON lists as before (a tuple serialises as a list, and
older, shorter entries read back with their trailing fields' defaults).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

import orjson

from agents.trafficking.config import RuleSet
from agents.trafficking.facts import Companion, Fact
from schemas.wire import json_bytes


class Crossing(NamedTuple):
    """SELF: one of the key's own crossings."""

    ms: int
    event: str
    post: str
    country: str
    direction: str
    purpose: str
    visa: str
    destination: str


class Escorted(NamedTuple):
    """ESCORT: a traveller the key escorted."""

    ms: int
    event: str
    traveller: str
    minor: bool
    relationship: str
    post: str


class Sponsored(NamedTuple):
    """SPONSOR: a traveller who declared the key as sponsor."""

    ms: int
    event: str
    traveller: str
    post: str


class Subject(NamedTuple):
    """BIOMETRIC: a subject seen with the key's document, at one revision of its dedup decision."""

    ms: int
    event: str
    subject: str
    post: str
    score: float = 0.0
    quality: float = 0.0
    thresholds: str = ""
    revision: int = 0


class Document(NamedTuple):
    """DOCUMENT: a document of the key's subject, from a red or confirmed link."""

    ms: int
    event: str
    document: str
    post: str
    score: float = 0.0
    thresholds: str = ""
    reserved: str = ""  # keeps ``revision`` at the position it has in Subject
    revision: int = 0


class Landing(NamedTuple):
    """LANDING: one landing of the key's vessel (or at its site)."""

    ms: int
    event: str
    site: str


ENTRIES: dict[str, type[Any]] = {"crossings": Crossing, "escorted": Escorted, "sponsored": Sponsored,
                                 "subjects": Subject, "documents": Document, "landings": Landing}
# A key's state in parts: each role's facts write and its rules read only their part's entries, so facts are in
# or out of order only among the facts of their own part (a document's crossings are not late behind its dedup
# decisions), and a late one makes only its part evaluate again (engine._reorder).
PARTS: dict[str, tuple[str, ...]] = {"travel": ("crossings", "escorted"), "sponsored": ("sponsored",),
                                     "subjects": ("subjects",), "documents": ("documents",), "landings": ("landings",)}
ENTRY_OF: dict[str, str] = {"SELF": "crossings", "ESCORT": "escorted", "SPONSOR": "sponsored", "BIOMETRIC": "subjects",
                            "DOCUMENT": "documents", "LANDING": "landings"}
PART_OF: dict[str, str] = {role: part for role, name in ENTRY_OF.items() for part, names in PARTS.items()
                           if name in names}
E = TypeVar("E", bound=tuple[Any, ...])


@dataclass
class KeyState:
    """Everything the rules remember about one key, oldest entries first; JSON in the changelog.

    ``logs`` holds each part's facts in event order, [ms, fields], kept its longest window plus
    the allowed lateness behind its newest: a redelivered fact is found there, and a fact that
    sorts before the newest makes the part evaluate them again in order. ``bases`` holds each
    part as it was before its oldest logged fact (entries and episodes; a fact leaving the log is
    applied to it), which is where that evaluation starts. ``episodes`` holds every alert as last
    emitted, with the part whose rule found it; ``current`` each rule's open episode.
    """

    crossings: list[Crossing] = field(default_factory=list)
    escorted: list[Escorted] = field(default_factory=list)
    sponsored: list[Sponsored] = field(default_factory=list)
    subjects: list[Subject] = field(default_factory=list)
    documents: list[Document] = field(default_factory=list)
    landings: list[Landing] = field(default_factory=list)
    episodes: dict[str, dict[str, Any]] = field(default_factory=dict)  # alert id → the alert as last emitted
    current: dict[str, str] = field(default_factory=dict)  # rule (or rule/instance) → its open episode's alert id
    max_ms: int = 0  # the newest fact of any part: the anomaly model's episodes are kept a window behind it
    logs: dict[str, list[list[Any]]] = field(default_factory=dict)
    bases: dict[str, KeyState] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        """Compact JSON for the table's changelog (no deep copy: entries are tuples and plain lists)."""
        return json_bytes(self._plain())

    def _plain(self) -> dict[str, Any]:
        return {name: getattr(self, name) if name != "bases" else {p: b._plain() for p, b in self.bases.items()}
                for name in _STATE_FIELDS}

    @classmethod
    def from_bytes(cls, data: bytes | None) -> KeyState:
        """The state stored by :meth:`to_bytes`, or a fresh one."""
        return cls._of(orjson.loads(data)) if data else cls()

    @classmethod
    def _of(cls, raw: dict[str, Any]) -> KeyState:
        if "log" in raw:  # written before the state had parts: one log, the order and ids of its last facts
            for entry in raw.pop("log"):
                raw.setdefault("logs", {}).setdefault(PART_OF[_logged(entry, _ROLE)], []).append(entry)
            raw.pop("seen", None), raw.pop("last", None)
        for name, entry in ENTRIES.items():
            raw[name] = [entry(*e) for e in raw.get(name, [])]
        raw["bases"] = {part: cls._of(base) for part, base in raw.get("bases", {}).items()}
        return cls(**raw)

    def rewound(self, part: str) -> KeyState:
        """The state with the part as it was before its oldest logged fact (its base), the others' shared.

        The part's log is empty and its entries and episodes are copies of the base's: facts from the
        log evaluated on it again give the part now. The base itself is shared (it moves on only as
        facts leave the log), so this state is not to be used after the one returned.
        """
        base = self.bases.get(part) or KeyState()
        mine = {a for a, ep in self.episodes.items() if ep.get("part") == part}
        entries: dict[str, Any] = {name: list(getattr(base, name)) for name in PARTS[part]}
        return replace(self, **entries,
                       episodes={**{a: ep for a, ep in self.episodes.items() if a not in mine},
                                 **{a: dict(ep) for a, ep in base.episodes.items()}},
                       current={**{slot: a for slot, a in self.current.items() if a not in mine}, **base.current},
                       logs={p: log for p, log in self.logs.items() if p != part}, bases=dict(self.bases))

    def holds(self, fact: Fact) -> bool:
        """Whether the part's entries hold the fact (a base's: one older than the logged facts, applied before)."""
        return any(e.event == fact.event_id and getattr(e, "revision", 0) == fact.revision
                   for e in getattr(self, ENTRY_OF[fact.role]))

    def prune(self, part: str, rules: RuleSet, newest_ms: int | None = None) -> list[list[Any]]:
        """Forget the part's entries and episodes older than its longest window before its newest fact.

        The newest is its last logged fact (a base, which logs none: ``newest_ms``). The facts the
        allowed lateness older still leave the log, and are returned for the part's base. Entries
        and facts are in event order, so only their oldest are looked at. Episodes of no part (the
        anomaly model's) are kept the longest window of any rule behind the newest fact of any part.
        """
        log = self.logs.get(part, [])
        newest = log[-1][0] if log else newest_ms
        floor = newest - rules.horizons[part] if newest is not None and part else None
        gone: list[list[Any]] = []
        if floor is not None:
            n = bisect_left(log, floor - rules.lateness_ms, key=_time)
            gone, log[:n] = log[:n], []
            for name in PARTS[part]:
                entries = getattr(self, name)
                del entries[:bisect_left(entries, floor, key=_time)]
        anomaly_floor = self.max_ms - rules.horizon_ms
        old = [a for a, ep in self.episodes.items()
               if (ep.get("part") or "") in (part, "")
               and ep["last_ms"] < (floor if floor is not None and ep.get("part") == part else anomaly_floor)]
        for alert_id in old:
            del self.episodes[alert_id]
        if old:
            self.current = {slot: a for slot, a in self.current.items() if a in self.episodes}
        return gone


# A logged fact: [epoch ms, {field index: value}] of the fields that differ from their default.
_FIELDS = tuple(f.name for f in fields(Fact))
_DEFAULTS: tuple[Any, ...] = tuple(f.default for f in fields(Fact))
_AT, _COMPANIONS, _ROLE, _EVENT, _REVISION = (_FIELDS.index(n) for n in (
    "occurred_at", "companions", "role", "event_id", "revision"))
# Ties in event time are ordered by role as the pipeline makes them (a crossing's facts at ingest, dedup's after)
# and then by event id: a stream in event order never needs re-evaluating.
_ROLE_ORDER = {"SELF": 0, "ESCORT": 1, "SPONSOR": 2, "LANDING": 3, "BIOMETRIC": 4, "DOCUMENT": 5}


def pack(fact: Fact) -> list[Any]:
    """The fact as its part's log keeps it."""
    values: dict[str, Any] = {}
    for n, name in enumerate(_FIELDS):
        if n == _AT:
            continue
        value = getattr(fact, name)
        if n == _COMPANIONS:
            if value:
                values[str(n)] = [[c.token, c.relationship, c.is_escort] for c in value]
        elif value != _DEFAULTS[n]:
            values[str(n)] = value
    return [fact.ms, values]


def unpack(entry: list[Any]) -> Fact:
    """The fact a log entry holds."""
    values: list[Any] = list(_DEFAULTS)
    for n, value in entry[1].items():
        values[int(n)] = value
    values[_AT] = datetime.fromtimestamp(entry[0] / 1000, tz=UTC)
    values[_COMPANIONS] = tuple(Companion(*c) for c in entry[1].get(str(_COMPANIONS), ()))
    return Fact(*values)


def order(fact: Fact) -> tuple[int, int, str, int]:
    """Where a fact sorts among its part's: event time, role, event id, revision."""
    return fact.ms, _ROLE_ORDER.get(fact.role, 9), fact.event_id, fact.revision


def logged_order(entry: list[Any]) -> tuple[int, int, str, int]:
    """:func:`order` of a logged fact, without unpacking it."""
    return (entry[0], _ROLE_ORDER.get(_logged(entry, _ROLE), 9), _logged(entry, _EVENT),
            _logged(entry, _REVISION))


def _logged(entry: list[Any], n: int) -> Any:
    return entry[1].get(str(n), _DEFAULTS[n])


def add(entries: list[E], entry: E) -> None:
    """Add an entry in event order: after the newest, unless a fact beyond the allowed lateness brought it."""
    if entries and entries[-1][0] > entry[0]:
        insort(entries, entry, key=_time)
    else:
        entries.append(entry)


def within(entries: Sequence[E], now_ms: int, window_ms: int) -> list[E]:
    """State entries whose time lies in the window ending at ``now_ms`` (entries are in event order)."""
    return list(entries[bisect_left(entries, now_ms - window_ms, key=_time):bisect_right(entries, now_ms, key=_time)])


def _time(entry: Sequence[Any]) -> Any:
    return entry[0]


_STATE_FIELDS = tuple(f.name for f in fields(KeyState))
