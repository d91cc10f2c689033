"""Regional sharing: adequacy or a recorded basis, and never a cell below k."""

from __future__ import annotations

import random
from datetime import date

import pytest

from agents.export import ExportRefused, Table, authorise, package, smallest_cell, suppress
from agents.privacy import policy


def test_adequate_destination_consent_basis_and_refusal() -> None:
    pol = policy()
    assert authorise("MYS", None, pol).basis == "adequacy"
    assert "KHM" not in pol.adequate
    with pytest.raises(ExportRefused, match="KHM: not on the adequacy list .* no consent basis"):
        authorise("KHM", None, pol)
    with pytest.raises(ExportRefused):
        authorise("KHM", "   ", pol)
    allowed = authorise("KHM", "MoU-2026-014 binding safeguards", pol)
    assert (allowed.basis, allowed.reference) == ("consent_or_safeguards", "MoU-2026-014 binding safeguards")
    with pytest.raises(ExportRefused, match="alpha-3"):
        authorise("my", None, pol)


def test_no_cell_below_k_ever_leaves() -> None:
    k = policy().export_k
    assert k >= 11
    rng = random.Random(4)  # noqa: S311 - test data, not a secret
    rows = [(f"2026-W{w}", c, rng.randint(0, 40), rng.randint(0, 40)) for w in range(30) for c in ("IDN", "MYS")]
    rows += [("edge", "IDN", k, k), ("edge", "MYS", k, k - 1)]  # exactly k stays; one below in any measure goes
    table = Table("t", ("week", "country"), ("events", "travellers"), rows)
    kept, dropped = suppress(table, k)
    assert all(r["events"] >= k and r["travellers"] >= k for r in kept)
    assert len(kept) + dropped == len(rows) and dropped > 0
    assert {"week": "edge", "country": "IDN", "events": k, "travellers": k} in kept
    assert not any(r["week"] == "edge" and r["country"] == "MYS" for r in kept)
    doc = package([table], authorise("SGP", None, policy()), policy(), (date(2026, 1, 1), date(2026, 7, 31)), "t")
    assert smallest_cell(doc) is not None and smallest_cell(doc) >= k  # type: ignore[operator]
    assert doc["manifest"]["suppressed"] == {"t": dropped} and doc["manifest"]["k"] == k
    assert set(doc) == {"manifest", "tables"}, "no margins or totals that would give a suppressed cell back"
