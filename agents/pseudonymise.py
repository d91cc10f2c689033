"""Pseudonymisation: nothing identifying reaches ClickHouse.

Direct identifiers become keyed HMAC-SHA256 tokens (the key of a purpose, from
:mod:`agents.keys`, never logged; its id travels with every row so a rotation
can tell tokens apart), dates of birth become age bands, biometric templates are
dropped. Which field gets which treatment follows its data-class tags through the
privacy policy (``schemas/privacy_policy.toml``); the row builders below apply it
field by field, and a test checks no field appears in clear where the policy says
otherwise.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

REMEMBERED = 100_000  # tokens a tokeniser keeps for values asked again (per process and key)
AGE_BANDS = ((0, "0-4"), (5, "5-11"), (12, "12-17"), (18, "18-24"), (25, "25-34"), (35, "35-44"),
             (45, "45-54"), (55, "55-64"), (65, "65+"))


@dataclass(frozen=True)
class Tokeniser:
    """Keyed tokens for one purpose: equal inputs give equal tokens, and nothing can be reversed without the key."""

    key: bytes
    key_id: str

    def __post_init__(self) -> None:
        """Pre-key the HMAC once: copying a keyed object halves the per-token cost."""
        object.__setattr__(self, "_base", hmac.new(self.key, digestmod=hashlib.sha256))
        object.__setattr__(self, "_made", {})

    def token(self, kind: str, *parts: str) -> str:
        """128-bit hex token of a normalised value; ``kind`` keeps tokens of different fields apart.

        Each value is tokenised once while it is among the last :data:`REMEMBERED` asked for: one
        crossing asks for its traveller's token for the row, the facts, the vault and the capture,
        and a frequent traveller's comes back every trip. The memory holds what the worker already
        holds (decoded events), and is gone with the process.
        """
        made: dict[tuple[str, tuple[str, ...]], str] = self._made  # type: ignore[attr-defined]
        found = made.get((kind, parts))
        if found is not None:
            return found
        mac = self._base.copy()  # type: ignore[attr-defined]
        mac.update(kind.encode())
        for part in parts:
            mac.update(b"\x1f")
            mac.update(normalise(part).encode())
        if len(made) >= REMEMBERED:
            made.clear()
        token = made[(kind, parts)] = mac.hexdigest()[:32]
        return token


def normalise(value: str) -> str:
    """Case-, accent- and space-insensitive form, so 'Siti  Nur' and 'SITI NUR' give one token."""
    folded = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    return " ".join(folded.upper().split())


def age_band(born: date | None, on: datetime) -> tuple[str, int]:
    """Age band on the event day and whether the person was a minor; ``unknown`` without a birth date."""
    if born is None:
        return "unknown", 0
    today = on.date()
    age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    band = "unknown"
    for lower, label in AGE_BANDS:
        if age >= lower:
            band = label
    return band, int(age < 18)


def document_token(tok: Tokeniser, issuing_state: str, number: str) -> str:
    """The token of a travel document: the same document at any post gives the same token."""
    return tok.token("document", issuing_state, number)


def person_token(tok: Tokeniser, traveller: dict[str, Any]) -> str:
    """A person's token: their document's, or their name's when they have no document."""
    doc = traveller.get("document")
    if doc:
        return document_token(tok, doc["issuing_state"], doc["number"])
    return tok.token("name", traveller["given_names"], traveller["surname"])


def crossing_row(record: dict[str, Any], tok: Tokeniser) -> dict[str, Any]:
    """The analytics row of a crossing: tokens, bands and codes only."""
    traveller = record["traveller"]
    document = traveller["document"] or {}
    occurred: datetime = record["occurred_at"]
    band, minor = age_band(traveller.get("date_of_birth"), occurred)
    sponsor = record.get("sponsor") or {}
    carrier = record.get("carrier") or {}
    companions = record.get("companions") or []
    capture = record.get("biometric")
    expiry = document.get("expiry_date")
    return {
        "event_id": record["event_id"],
        "occurred_at": occurred,
        "post_id": record["post"]["post_id"],
        "post_type": record["post"]["post_type"],
        "post_country": record["post"]["country"],
        "direction": record["direction"],
        "document_token": document_token(tok, document["issuing_state"], document["number"]) if document else "",
        "document_type": document.get("document_type", "NONE"),
        "issuing_state": document.get("issuing_state", ""),
        "document_expired": int(expiry is not None and expiry < occurred.date()),
        "name_token": tok.token("name", traveller["given_names"], traveller["surname"]),
        "age_band": band,
        "is_minor": minor,
        "sex": traveller["sex"],
        "nationality": traveller["nationality"],
        "travel_purpose": record["travel_purpose"],
        "visa_type": record.get("visa_type") or "",
        "has_placement": int(bool(record.get("placement_id"))),
        "placement_token": tok.token("placement", record["placement_id"]) if record.get("placement_id") else "",
        "sponsor_kind": sponsor.get("kind", ""),
        "sponsor_token": tok.token("sponsor", sponsor["name"]) if sponsor else "",
        "sponsor_registered": int(bool(sponsor.get("registration_id"))),
        "companion_count": min(len(companions), 255),
        "escort_tokens": [document_token(tok, c["document_issuing_state"], c["document_number"])
                          for c in companions if c.get("is_escort")],
        "companion_relationships": [c["relationship"] for c in companions],
        "carrier_mode": carrier.get("mode", ""),
        "carrier_id": carrier.get("identifier", ""),
        "origin_country": record["origin_country"],
        "destination_country": record["destination_country"],
        "refused": int(record.get("refused", False)),
        "refusal_reason": record.get("refusal_reason") or "",
        "officer_token": tok.token("officer", record["officer_id"]),
        "has_biometric": int(capture is not None),
        "biometric_quality": float(capture["quality"]) if capture else 0.0,
        "key_id": tok.key_id,
    }


def landing_row(record: dict[str, Any], tok: Tokeniser) -> dict[str, Any]:
    """The analytics row of a landing: counts, site and vessel token; no person-level data."""
    vessel = record["vessel"]
    vessel_ref = vessel.get("registration") or vessel.get("name") or ""
    return {
        "landing_id": record["landing_id"],
        "occurred_at": record["occurred_at"],
        "site_id": record["site"]["site_id"],
        "site_name": record["site"]["name"],
        "province": record["site"]["province"],
        "country": record["site"]["country"],
        "latitude": record["site"]["latitude"],
        "longitude": record["site"]["longitude"],
        "vessel_token": tok.token("vessel", vessel_ref) if vessel_ref else "",
        "vessel_type": vessel["vessel_type"],
        "flag_state": vessel.get("flag_state") or "",
        "landing_kind": record["landing_kind"],
        "adults": record["adults"],
        "minors": record["minors"],
        "unaccompanied_minors": record["unaccompanied_minors"],
        "nationalities": list(record.get("nationalities") or []),
        "persons_registered": len(record.get("persons") or []),
        "key_id": tok.key_id,
    }
