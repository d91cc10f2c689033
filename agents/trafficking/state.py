"""What the rules remember about one key, within the longest window: named entries, stored as JSON lists.

Each entry is a ``NamedTuple``, so the rules read ``e.direction``, not ``e[4]``, while the
changelog keeps the same compact JSON lists as before (a tuple serialises as a list, and
older, shorter entries read back with their trailing fields' defaults).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple, TypeVar

import orjson

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
E = TypeVar("E", bound=tuple[Any, ...])


@dataclass
class KeyState:
    """Everything the rules remember about one key, oldest entries first; JSON in the changelog.

    ``seen`` holds (event id, role) of every fact applied, so a replayed fact is recognised;
    ``episodes`` every alert as last emitted, ``current`` each rule's open episode.
    """

    crossings: list[Crossing] = field(default_factory=list)
    escorted: list[Escorted] = field(default_factory=list)
    sponsored: list[Sponsored] = field(default_factory=list)
    subjects: list[Subject] = field(default_factory=list)
    documents: list[Document] = field(default_factory=list)
    landings: list[Landing] = field(default_factory=list)
    episodes: dict[str, dict[str, Any]] = field(default_factory=dict)  # alert id → the alert as last emitted
    current: dict[str, str] = field(default_factory=dict)  # rule (or rule/instance) → its open episode's alert id
    seen: list[str] = field(default_factory=list)
    max_ms: int = 0
    # the key's facts in event order, [ms, fields], kept the longest window plus the allowed lateness, and the
    # order key of the last one applied: a fact that sorts before it makes the key evaluate them again in order
    log: list[list[Any]] = field(default_factory=list)
    last: list[Any] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        """Compact JSON for the table's changelog (no deep copy: entries are tuples and plain lists)."""
        return json_bytes({name: getattr(self, name) for name in _STATE_FIELDS})

    @classmethod
    def from_bytes(cls, data: bytes | None) -> KeyState:
        """The state stored by :meth:`to_bytes`, or a fresh one."""
        if not data:
            return cls()
        raw = orjson.loads(data)
        for name, entry in ENTRIES.items():
            raw[name] = [entry(*e) for e in raw.get(name, [])]
        return cls(**raw)

    def prune(self, horizon_ms: int, lateness_ms: int = 0) -> None:
        """Forget evidence older than the longest window before the newest fact (facts: and the lateness)."""
        floor = self.max_ms - horizon_ms
        drop = 0
        while drop < len(self.log) and self.log[drop][0] < floor - lateness_ms:
            drop += 1  # the log is in event order: its oldest facts go first
        if drop:
            del self.log[:drop]
        for name in ENTRIES:
            entries = getattr(self, name)
            keep = [e for e in entries if e.ms >= floor]
            if len(keep) != len(entries):
                setattr(self, name, keep)
        live = {e.event for name in ENTRIES for e in getattr(self, name)}
        self.seen = [s for s in self.seen if s.rsplit("/", 1)[0] in live]
        self.episodes = {a: ep for a, ep in self.episodes.items() if ep["last_ms"] >= floor}
        self.current = {slot: a for slot, a in self.current.items() if a in self.episodes}


def within(entries: Sequence[E], now_ms: int, window_ms: int) -> list[E]:
    """State entries whose time lies in the window ending at ``now_ms``."""
    return [e for e in entries if now_ms - window_ms <= e[0] <= now_ms]


_STATE_FIELDS = tuple(f.name for f in fields(KeyState))
