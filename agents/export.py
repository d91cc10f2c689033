"""Regional sharing with partner states: who may receive, and what leaves (pure functions).

A destination receives data only if the policy's adequacy list names it (UU PDP
27/2022 art. 56(2): equal or higher protection), or if a consent basis or binding
safeguards are recorded for the transfer (art. 56(3)-(4)); anything else is
refused, and the refusal is audited by the caller. What leaves is aggregates:
counts per cell, with every cell whose count of distinct travellers (or events)
is below ``k`` suppressed, as the Counter Trafficking Data Collaborative
publishes (k >= 11). No margins or totals are published, so a suppressed cell
cannot be recovered by subtraction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from agents.privacy import Policy
from schemas.errors import LintasError


class ExportRefused(LintasError):
    """A transfer the policy does not allow (names the destination and the reason)."""

    code = "export_refused"


@dataclass(frozen=True)
class Authorisation:
    """Why a transfer to ``destination`` is allowed: ``adequacy`` or a recorded consent/safeguard reference."""

    destination: str
    basis: str
    reference: str


def authorise(destination: str, consent_basis: str | None, pol: Policy) -> Authorisation:
    """Allow a transfer to an adequate destination or one with a recorded basis; else :class:`ExportRefused`."""
    if len(destination) != 3 or not destination.isalpha() or not destination.isupper():
        raise ExportRefused(f"destination {destination!r}: expected an ISO 3166-1 alpha-3 code")
    if destination in pol.adequate:
        return Authorisation(destination, "adequacy", f"privacy policy {pol.version}")
    if consent_basis and consent_basis.strip():
        return Authorisation(destination, "consent_or_safeguards", consent_basis.strip())
    raise ExportRefused(f"destination {destination}: not on the adequacy list of privacy policy {pol.version} "
                        "and no consent basis or binding safeguards recorded (--consent-basis)")


@dataclass(frozen=True)
class Table:
    """One aggregate table: dimension names, and rows of dimension values with their counts."""

    name: str
    dimensions: tuple[str, ...]
    measures: tuple[str, ...]
    rows: list[tuple[Any, ...]]


def suppress(table: Table, k: int) -> tuple[list[dict[str, Any]], int]:
    """Cells whose every measure is at least ``k``; the number of cells suppressed. Nothing below k leaves."""
    kept, dropped = [], 0
    for row in table.rows:
        dims, counts = row[:len(table.dimensions)], row[len(table.dimensions):]
        if min(int(c) for c in counts) < k:
            dropped += 1
            continue
        kept.append(dict(zip(table.dimensions + table.measures, (*map(_plain, dims), *map(int, counts)),
                             strict=True)))
    return kept, dropped


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date | datetime) else value


def package(tables: Iterable[Table], auth: Authorisation, pol: Policy, period: tuple[date, date],
            source: str) -> dict[str, Any]:
    """The export document: suppressed tables and a manifest (policy, k, basis, counts, checksum of the data)."""
    out: dict[str, Any] = {}
    suppressed: dict[str, int] = {}
    for table in tables:
        out[table.name], suppressed[table.name] = suppress(table, pol.export_k)
    body = json.dumps(out, sort_keys=True).encode()
    return {
        "manifest": {
            "source": source, "destination": auth.destination, "basis": auth.basis, "reference": auth.reference,
            "policy_version": pol.version, "k": pol.export_k, "period": [period[0].isoformat(), period[1].isoformat()],
            "cells": {name: len(rows) for name, rows in out.items()}, "suppressed": suppressed,
            "sha256": hashlib.sha256(body).hexdigest(),
        },
        "tables": out,
    }


def smallest_cell(document: dict[str, Any], measures: Sequence[str] = ("travellers", "events", "alerts")) -> int | None:
    """The smallest count in an export document (None when it has no cells): for checks and tests."""
    counts = [int(row[m]) for rows in document["tables"].values() for row in rows for m in measures if m in row]
    return min(counts) if counts else None
