"""Purpose-bound keys: tokens that do not join across purposes, rotation with an overlap, retirement."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agents.keys import KeyRefused, Purposes, live_tokenisers, tokeniser
from agents.pseudonymise import document_token
from streams.keystores import FileKeyring
from streams.sim.simulator import Simulator


def _documents(n: int = 2000) -> list[tuple[str, str]]:
    sim = Simulator(seed=5, dim=8, end=datetime(2026, 11, 20, tzinfo=UTC), population=600)
    return sorted({(r["traveller"]["document"]["issuing_state"], r["traveller"]["document"]["number"])
                   for kind, r in sim.events(n, 0) if kind == "crossing" and r["traveller"]["document"]})


def test_keyring_is_private_and_never_prints_material(tmp_path: Path) -> None:
    ring = FileKeyring(tmp_path / "secrets" / "keyring.json")
    assert stat.S_IMODE((tmp_path / "secrets" / "keyring.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700
    assert [k["id"] for k in ring.describe()] == ["analytics-1", "operations-1", "regional-1"]
    material = ring.material("analytics-1")
    assert len(material) == 32 and material.hex() not in repr(ring) + repr(ring.describe())
    assert FileKeyring(tmp_path / "secrets" / "keyring.json").material("analytics-1") == material, "created once"


def test_tokens_of_two_purposes_do_not_join(tmp_path: Path) -> None:
    keys = Purposes.from_provider(FileKeyring(tmp_path / "keyring.json"))
    docs = _documents()
    by_purpose = {p: {document_token(getattr(keys, p), *d) for d in docs}
                  for p in ("operations", "analytics", "regional")}
    assert all(len(tokens) == len(docs) for tokens in by_purpose.values())
    assert not by_purpose["operations"] & by_purpose["analytics"]
    assert not by_purpose["analytics"] & by_purpose["regional"]
    assert not by_purpose["operations"] & by_purpose["regional"]


def test_rotation_overlap_and_retirement(tmp_path: Path) -> None:
    ring = FileKeyring(tmp_path / "keyring.json")
    worker = FileKeyring(tmp_path / "keyring.json")  # another process holding the same file
    docs = _documents(300)
    before = {d: document_token(tokeniser(ring, "analytics"), *d) for d in docs}
    ops_before = {d: document_token(tokeniser(ring, "operations"), *d) for d in docs}

    assert ring.rotate("analytics") == "analytics-2"
    assert worker.reload_if_changed() and worker.active("analytics") == "analytics-2"
    assert worker.live("analytics") == ["analytics-2", "analytics-1"]
    after = {d: document_token(tokeniser(worker, "analytics"), *d) for d in docs}
    assert not set(before.values()) & set(after.values()), "new key, new tokens"
    # during the overlap every token made so far is still found from the identity, under its key id
    for d in docs:
        found = {t.key_id: document_token(t, *d) for t in live_tokenisers(worker, "analytics")}
        assert found == {"analytics-2": after[d], "analytics-1": before[d]}
    # operations keep their tokens: the rules' state and the gallery are untouched by an analytics rotation
    assert {d: document_token(tokeniser(worker, "operations"), *d) for d in docs} == ops_before

    with pytest.raises(KeyRefused, match="active: rotate analytics first"):
        ring.retire("analytics-2")
    with pytest.raises(KeyRefused, match="state migration"):
        ring.rotate("operations")
    with pytest.raises(KeyRefused, match="unknown purpose"):
        ring.rotate("marketing")
    ring.retire("analytics-1")
    assert worker.reload_if_changed() and worker.live("analytics") == ["analytics-2"]
    with pytest.raises(KeyRefused, match="not live"):
        worker.material("analytics-1")
