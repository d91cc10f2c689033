"""Pseudonymisation cost per event: what ingest spends on tokens, bands and facts, per step.

Simulated crossings (no Kafka, no ClickHouse) through each step the ingest agent
runs on an accepted event: the analytics row (analytics key), the facts for the
trafficking rules (operations key), the identity vault and the templates sealed
under each person's own key (a SQLite key store in a temporary directory, as the
worker's), the record of processing (one per batch).

    python -m bench.privacy --crossings 20000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from agents.audit import Processing, classes_of
from agents.biometric import Capture, capture_commands
from agents.keys import Purposes
from agents.pseudonymise import Tokeniser, crossing_row, person_token
from agents.sealing import SubjectSealer
from agents.trafficking.facts import crossing_facts
from agents.vault import identities, sealed_entries
from bench import best_of, print_table
from schemas.contracts import CROSSING_EVENT
from streams.keystores import SqliteSubjectKeys
from streams.sim.simulator import Simulator


def main() -> None:
    """Run and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--crossings", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=5_000, help="events per audit record (the sink batch size)")
    args = parser.parse_args()
    sim = Simulator(seed=2, dim=8, end=datetime(2026, 11, 20, tzinfo=UTC), population=20_000, days=3)
    records = [r for kind, r in sim.events(args.crossings, 0) if kind == "crossing"]
    keys = Purposes(Tokeniser(b"bench-operations-key-not-secret1", "operations-1"),
                    Tokeniser(b"bench-analytics-key-not-secret01", "analytics-1"),
                    Tokeniser(b"bench-regional-key-not-secret001", "regional-1"))
    rows = [crossing_row(r, keys.analytics) for r in records]
    n = len(records)
    tmp = tempfile.TemporaryDirectory()
    sealer = SubjectSealer(SqliteSubjectKeys(Path(tmp.name) / "subject_keys.sqlite3"))
    people = [identities(r, "crossing", keys.operations) for r in records]
    batches = [{t: i for p in people[s:s + args.batch] for t, i in p.items()} for s in range(0, n, args.batch)]
    t0 = time.perf_counter()
    for batch in batches:  # every person new: their key is created (one transaction per batch), then sealed
        sealed_entries(batch, sealer)
    vault_new = time.perf_counter() - t0
    rng = np.random.default_rng(3)
    captures = [(Capture(str(r["event_id"]), str(r["event_id"]), "crossing", "ID-BTH", r["occurred_at"],
                         person_token(keys.operations, r["traveller"]), {"quality": 0.9}, "biometric"),
                 rng.standard_normal(512).astype(np.float32)) for r in records[:5000]]
    probes = best_of(lambda: capture_commands(captures, sealer, 4)) / len(captures) * n
    companions = sum(len(r["companions"]) for r in records)
    steps = [
        ("one token (HMAC-SHA256, pre-keyed)", lambda: [person_token(keys.analytics, r["traveller"]) for r in records],
         "1 per event"),
        ("analytics row (tokens, age band, codes)", lambda: [crossing_row(r, keys.analytics) for r in records],
         "document, name, officer (+ placement, sponsor, escorts)"),
        ("trafficking facts (operations tokens)",
         lambda: [crossing_facts(r, row, keys.operations) for r, row in zip(records, rows, strict=True)],
         f"traveller + {companions / n:.2f} companions (+ sponsor)"),
        ("identity vault, new persons (key made + sealed)", lambda: vault_new,
         f"first sighting of each of {sealer.store.count():,} persons"),  # type: ignore[attr-defined]
        ("identity vault, known persons (sealed again)", lambda: [sealed_entries(b, sealer) for b in batches],
         "a changed identity; an unchanged one is skipped"),
        ("search command, template sealed to the person (512-d)", lambda: probes,
         "per capture (most crossings have one)"),
        ("record of processing (per batch)",
         lambda: [Processing("ingest_crossings", "store", "analytics", classes_of(CROSSING_EVENT), args.batch,
                             "crossing_events:p0:0-1", "clickhouse:crossings").to_json()
                  for _ in range(0, n, args.batch)], f"1 per {args.batch:,} events"),
    ]
    out = []
    total = 0.0
    for name, fn, note in steps:
        seconds = fn() if name.startswith(("identity vault, new", "search command")) else best_of(fn)
        if not name.startswith(("one token", "identity vault, known")):
            total += seconds
        out.append({"step": name, "us_per_event": seconds / n * 1e6, "events_per_s": int(n / seconds), "note": note})
    out.append({"step": "pseudonymisation total", "us_per_event": total / n * 1e6, "events_per_s": int(n / total),
                "note": f"{n:,} simulated crossings, 1 core"})
    print_table(out, {"us_per_event": "{:.1f}"})


if __name__ == "__main__":
    main()
