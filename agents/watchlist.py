"""Document and watchlist checks: every crossing's document against lists that change during the day.

Border officers check each travel document against lost and stolen document lists
(INTERPOL SLTD through I-24/7, shared regionally through ASEANAPOL's e-ADS), against
notices and against national alert lists. In Lintas each list is a compacted Kafka
topic keyed by the *operations token* of the document (issuing state and number, the
same keyed HMAC the pipeline gives the document at a crossing), so a list entry and a
crossing meet as equal tokens and no list's document number travels in clear.

Pure functions here; :mod:`streams.ops.watchlist` reads list files and publishes them, and
keeps every worker's copy of the lists current; the ingest agent calls :func:`check`
on each batch of crossings. A hit is an alert for an officer to verify against the
list's source (the alert schema and ``alerts`` table of the trafficking rules, family
``watchlist``): never a decision about the traveller. A YELLOW notice is a missing
person: the traveller may be at risk, which is a reason for protection screening.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import fastavro

from agents.pseudonymise import Tokeniser, document_token, normalise
from agents.trafficking.engine import Alert
from schemas.contracts import internal_schema
from schemas.errors import LintasError
from schemas.wire import avro_bytes

ENTRY_SCHEMA = internal_schema("WatchlistEntry")
COLUMNS = ("issuing_state", "number", "reason", "valid_from", "valid_until", "source")
REQUIRED_COLUMNS = ("issuing_state", "number", "reason")
_COUNTRY = re.compile(r"^[A-Z]{3}$")
_NUMBER = re.compile(r"^[A-Z0-9][A-Z0-9 /-]{0,29}$")  # after normalise(): ICAO 9303 numbers, national ids
_CODE = re.compile(r"^[A-Z][A-Z0-9_]{1,31}$")
_SOURCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._/:-]{0,63}$")
EXPIRED_RULE = "document.expired"
LIST_CLASSES = ("CRIME_RECORD", "PSEUDONYMOUS")  # a listing is crime-record data about the document's holder


@dataclass(frozen=True)
class WatchList:
    """One list Lintas checks: its reasons, how urgent a hit is, and what a hit means."""

    name: str
    title: str
    severity: str
    reasons: frozenset[str] | None  # None: the list's owner defines its codes
    default_source: str
    indicators: tuple[str, ...]

    @property
    def rule_id(self) -> str:
        """The alerts' rule id: ``watchlist.<name>``."""
        return f"watchlist.{self.name}"


LISTS: dict[str, WatchList] = {wl.name: wl for wl in (
    WatchList("lost_stolen", "lost, stolen and revoked travel documents", "HIGH",
              frozenset({"LOST", "STOLEN", "STOLEN_BLANK", "REVOKED", "INVALIDATED"}), "INTERPOL-SLTD",
              ("INTERPOL-SLTD", "UNODC-HTI:general:false-or-borrowed-documents")),
    WatchList("notices", "INTERPOL notices and diffusions on the document's holder", "HIGH",
              frozenset({"RED", "YELLOW", "BLUE", "BLACK", "GREEN", "ORANGE", "PURPLE", "DIFFUSION"}),
              "INTERPOL-I24/7", ("INTERPOL-notices", "ASEANAPOL-eADS")),
    WatchList("national_alerts", "national alert list (immigration, police)", "MEDIUM", None, "NATIONAL",
              ("NATIONAL-alert-list",)),
)}
MEANING = {
    "YELLOW": "a YELLOW notice is a missing person: the traveller may be at risk; screen for protection needs",
    "BLACK": "a BLACK notice concerns an unidentified body: the document may be used by someone else",
    "STOLEN_BLANK": "a blank stolen from the issuer: the document may be counterfeit",
}


class ListFileError(LintasError):
    """A list file has bad rows; ``errors`` holds (line, column, reason) for each, never a value."""

    code = "watchlist_file_invalid"

    def __init__(self, errors: list[tuple[int, str, str]]) -> None:
        """Keep every error; the message shows the first twenty."""
        self.errors = errors
        shown = "; ".join(f"line {line}: {column}: {reason}" for line, column, reason in errors[:20])
        more = f" (and {len(errors) - 20} more)" if len(errors) > 20 else ""
        super().__init__(f"{len(errors)} bad row(s), nothing published: {shown}{more}")


@dataclass(frozen=True)
class ListRow:
    """One valid row of a list file (clear data: stays in the loading process)."""

    line: int
    issuing_state: str
    number: str
    reason: str = ""
    valid_from: date | None = None
    valid_until: date | None = None
    source: str = ""

    def token(self, tok: Tokeniser) -> str:
        """The document's operations token: what the list topic is keyed by."""
        return document_token(tok, self.issuing_state, self.number)


@dataclass(frozen=True)
class Entry:
    """One list entry as published (no document number: the key of its record is the token)."""

    list: str
    reason: str
    source: str
    valid_from: date | None
    valid_until: date | None
    loaded_at: datetime
    load_id: str
    key_id: str

    def to_bytes(self) -> bytes:
        """Avro binary (internal schema, no registry)."""
        return avro_bytes(ENTRY_SCHEMA, {**self.__dict__})

    @classmethod
    def from_bytes(cls, data: bytes) -> Entry:
        """Read an entry written by :meth:`to_bytes`."""
        rec: dict[str, Any] = fastavro.schemaless_reader(io.BytesIO(data), ENTRY_SCHEMA, ENTRY_SCHEMA)  # type: ignore[assignment]
        return cls(**rec)

    def applies_on(self, day: date) -> bool:
        """Whether the entry is in force on ``day`` (both ends inclusive)."""
        return (self.valid_from is None or self.valid_from <= day) and (
            self.valid_until is None or day <= self.valid_until)


def parse_list_file(text: str, watchlist: WatchList, removal: bool = False) -> list[ListRow]:
    """Every row of a CSV list file, or :class:`ListFileError` naming each bad row by line and column.

    Columns (header first): ``issuing_state,number,reason,valid_from,valid_until,source``;
    a removal needs only the first two. Dates are ISO (``2026-12-31``); an empty
    ``source`` is the list's default. A document listed twice is an error: which row
    holds would be a guess.
    """
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    required = REQUIRED_COLUMNS[:2] if removal else REQUIRED_COLUMNS
    missing = [c for c in required if c not in header]
    if missing:
        raise ListFileError([(1, c, "missing column in the header") for c in missing])
    unknown = [c for c in header if c not in COLUMNS]
    if unknown:
        raise ListFileError([(1, c, f"unknown column (expected {', '.join(COLUMNS)})") for c in unknown])
    rows: list[ListRow] = []
    errors: list[tuple[int, str, str]] = []
    seen: dict[tuple[str, str], int] = {}
    for raw in reader:
        line = reader.line_num
        cells = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        if None in raw:
            errors.append((line, "(row)", "more cells than columns"))
            continue
        row, problems = _row(line, cells, watchlist, removal)
        errors += problems
        if row is not None:
            doc = (row.issuing_state, normalise(row.number))
            if doc in seen:
                errors.append((line, "number", f"the same document as line {seen[doc]}"))
            seen.setdefault(doc, line)
            rows.append(row)
    if errors:
        raise ListFileError(errors)
    if not rows:
        raise ListFileError([(1, "(file)", "no rows")])
    return rows


def _row(line: int, cells: dict[str, str], watchlist: WatchList,
         removal: bool) -> tuple[ListRow | None, list[tuple[int, str, str]]]:
    errors = []
    state = cells.get("issuing_state", "").upper()
    if not _COUNTRY.match(state):
        errors.append((line, "issuing_state", "expected ISO 3166-1 alpha-3 (ICAO) code"))
    number = normalise(cells.get("number", ""))
    if not number:
        errors.append((line, "number", "must not be empty"))
    elif not _NUMBER.match(number):
        errors.append((line, "number", "letters, digits, space, '/' or '-', at most 30"))
    if removal:
        return (None if errors else ListRow(line, state, number)), errors
    reason = cells.get("reason", "").upper()
    if not _CODE.match(reason):
        errors.append((line, "reason", "expected a code of capital letters, digits and '_'"))
    elif watchlist.reasons is not None and reason not in watchlist.reasons:
        known = ", ".join(sorted(watchlist.reasons))
        errors.append((line, "reason", f"not a reason of list {watchlist.name} ({known})"))
    days = {}
    for column in ("valid_from", "valid_until"):
        text = cells.get(column, "")
        try:
            days[column] = date.fromisoformat(text) if text else None
        except ValueError:
            errors.append((line, column, "expected an ISO date, e.g. 2026-12-31"))
            days[column] = None
    if days["valid_from"] and days["valid_until"] and days["valid_until"] < days["valid_from"]:
        errors.append((line, "valid_until", "before valid_from"))
    source = cells.get("source", "") or watchlist.default_source
    if not _SOURCE.match(source):
        errors.append((line, "source", "letters, digits and ' ._/:-', at most 64"))
    if errors:
        return None, errors
    return ListRow(line, state, number, reason, days["valid_from"], days["valid_until"], source), []


def entries(rows: Iterable[ListRow], watchlist: WatchList, tok: Tokeniser, loaded_at: datetime,
            load_id: str) -> list[tuple[str, bytes]]:
    """Each row as (document token, entry record): what the list topic receives."""
    return [(row.token(tok), Entry(watchlist.name, row.reason, row.source, row.valid_from, row.valid_until,
                                   loaded_at, load_id, tok.key_id).to_bytes()) for row in rows]


# -- the check ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Presented:
    """What one crossing presents to the checks: the document's operations token and expiry, where and when."""

    event_id: str
    occurred_at: datetime
    post_id: str
    direction: str
    document_token: str
    expiry_date: date | None


def presented(record: dict[str, Any], token: str) -> Presented | None:
    """The check input of a decoded crossing; ``None`` without a document (nothing to check).

    ``token`` is the traveller's operations token as ingest made it for the crossing's
    facts (:func:`agents.pseudonymise.person_token`: the document's token when there is a
    document), so the hot path computes it once.
    """
    document = record["traveller"].get("document")
    if not document:
        return None
    return Presented(str(record["event_id"]), record["occurred_at"], record["post"]["post_id"], record["direction"],
                     token, document.get("expiry_date"))


Lookup = Callable[[str], Sequence[Entry]]


def check(batch: Iterable[Presented], lookup: Lookup) -> list[Alert]:
    """The alerts of a batch of crossings: each list entry in force on the crossing day, and expired documents.

    Deterministic: an alert's id is its rule, the document token and the event, so a
    replayed crossing gives the same alert again (the table keeps one).
    """
    alerts = []
    for p in batch:
        day = p.occurred_at.date()
        for entry in lookup(p.document_token):
            if entry.applies_on(day) and entry.list in LISTS:
                alerts.append(_hit(p, entry, LISTS[entry.list]))
        if p.expiry_date is not None and p.expiry_date < day:
            alerts.append(_expired(p, (day - p.expiry_date).days))
    return alerts


def _alert(p: Presented, rule_id: str, severity: str, indicators: tuple[str, ...], version: str, explanation: str,
           features: dict[str, float]) -> Alert:
    alert_id = "W" + hashlib.sha256(f"{rule_id}\x1f{p.document_token}\x1f{p.event_id}".encode()).hexdigest()[:31]
    return Alert(alert_id=alert_id, rule_id=rule_id, rule_version=1, rules_version=version, indicators=indicators,
                 severity=severity, key_kind="doc", key_token=p.document_token, subjects=(p.document_token,),
                 evidence_event_ids=(p.event_id,), post_ids=(p.post_id,), explanation=explanation,
                 features=features, first_seen=p.occurred_at, last_seen=p.occurred_at)


def _hit(p: Presented, entry: Entry, watchlist: WatchList) -> Alert:
    span = f"{entry.valid_from or 'open'} to {entry.valid_until or 'open'}"
    meaning = f" ({MEANING[entry.reason]})" if entry.reason in MEANING else ""
    explanation = (f"The document presented at {p.post_id} ({p.direction}) is on the {watchlist.title} list: reason "
                   f"{entry.reason}{meaning}, source {entry.source}, entry valid {span}. A match of the document "
                   f"token, not of the person: verify with the source before acting.")
    loaded_days = (p.occurred_at - entry.loaded_at).total_seconds() / 86400
    return _alert(p, watchlist.rule_id, watchlist.severity, (*watchlist.indicators, f"{watchlist.name}:{entry.reason}"),
                  f"{entry.source}@{entry.loaded_at.astimezone(UTC):%Y-%m-%dT%H:%MZ}", explanation,
                  {"days_since_listed": round(loaded_days, 2)})


def _expired(p: Presented, days: int) -> Alert:
    explanation = (f"The document presented at {p.post_id} ({p.direction}) expired {days} day(s) before the crossing. "
                   "Exits on an expired document often follow a long stay (check the overstay records).")
    return _alert(p, EXPIRED_RULE, "LOW", ("ICAO-9303:document-validity",), "1", explanation,
                  {"days_expired": float(days)})
