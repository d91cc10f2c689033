"""Watchlist checks with a list of 1,000,000 entries: load, read back, live update, check throughput, memory.

Runs a stack of its own (Kafka in a temporary state dir, ports 24xxx; installed jars
shared) so the local demo's lists stay as they are:

1. a CSV list of N synthetic document numbers (and the documents of some simulated
   crossings, so the check has hits to find) through ``lintas watchlist load``'s code:
   validate, tokenise, one Kafka transaction;
2. a worker's :class:`streams.watchlist_replica.Replica` reading the list from Kafka to its end
   (what every worker start costs), and the memory that copy takes;
3. live updates: one more entry loaded while the replica runs, time until it matches;
4. the check as the ingest agent runs it, per batch of crossings: the document token
   (:func:`agents.watchlist.presented`) and the lookups (:func:`agents.watchlist.check`).

    python -m bench.watchlist --entries 1000000 --crossings 50000
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agents.keys import tokeniser
from agents.pseudonymise import Tokeniser, person_token
from agents.watchlist import Presented, check, presented
from bench import best_of, own_stack, print_table
from infra.process import rss_bytes
from streams.clients import clickhouse_client
from streams.keystores import FileKeyring
from streams.ops.migrate import migrate
from streams.ops.watchlist import load
from streams.sim.simulator import Simulator
from streams.watchlist_replica import Replica


def rss_mb() -> float:
    """This process's resident memory."""
    return (rss_bytes(os.getpid()) or 0) / 2**20


def main() -> None:
    """Run and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--crossings", type=int, default=50_000)
    parser.add_argument("--listed", type=int, default=50, help="crossings whose document is put on the list")
    parser.add_argument("--batch", type=int, default=5_000, help="crossings per ingest batch")
    args = parser.parse_args()

    sim = Simulator(seed=9, dim=8, end=datetime(2026, 11, 20, tzinfo=UTC), population=20_000, days=3)
    records = [r for kind, r in sim.events(args.crossings, 0) if kind == "crossing"]
    rng = random.Random(9)
    planted = {(r["traveller"]["document"]["issuing_state"], r["traveller"]["document"]["number"])
               for r in rng.sample(records, args.listed)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        with own_stack(tmp) as stack:
            settings = stack.settings
            migrate(clickhouse_client(settings, migrate=True))  # the record of processing the loads write to
            csv = Path(tmp) / "list.csv"
            with csv.open("w") as f:
                f.write("issuing_state,number,reason,valid_from,valid_until,source\n")
                for state, number in sorted(planted):
                    f.write(f"{state},{number},STOLEN,,,\n")
                for n in rng.sample(range(10**9), args.entries - len(planted)):
                    f.write(f"XXA,Z{n:09d},LOST,,,\n")  # XXA: no simulated traveller carries one
            t0 = time.perf_counter()
            published = load(settings, csv, "lost_stolen")
            secs = time.perf_counter() - t0
            rows.append({"step": "load: validate, tokenise, publish (1 transaction)", "items": published.published,
                         "seconds": secs, "per second": published.published / secs, "note": ""})

            before = rss_mb()
            replica = Replica(settings)
            t0 = time.perf_counter()
            replica.start()
            replica.wait(timeout_s=600)
            secs = time.perf_counter() - t0
            size = replica.sizes()["lost_stolen"]
            rows.append({"step": "worker's copy: read the list to its end", "items": size, "seconds": secs,
                         "per second": size / secs, "note": f"+{rss_mb() - before:.0f} MB resident"})

            waits, calls = [], []
            tok = tokeniser(FileKeyring(settings.keyring_path), "operations")
            for i in range(10):
                one = Path(tmp) / f"one-{i}.csv"
                one.write_text(f"issuing_state,number,reason\nIDN,LIVE{i:05d},STOLEN\n")
                token = tok.token("document", "IDN", f"LIVE{i:05d}")
                t0 = time.perf_counter()
                load(settings, one, "lost_stolen")
                calls.append(time.perf_counter() - t0)
                while not replica.lookup(token):
                    time.sleep(0.001)
                waits.append(time.perf_counter() - t0)
            rows.append({"step": "live update: load started → entry matches", "items": len(waits),
                         "seconds": statistics.median(waits), "per second": float("nan"),
                         "note": f"median; max {max(waits):.2f} s; the load call alone "
                                 f"{statistics.median(calls):.2f} s"})

            batches = [records[i:i + args.batch] for i in range(0, len(records), args.batch)]
            hits = sum(len(check(checked(b, tok), replica.lookup)) for b in batches)
            best = best_of(lambda: [check(checked(b, tok), replica.lookup) for b in batches])
            listed_hits = sum(1 for r in records if (r["traveller"]["document"]["issuing_state"],
                                                    r["traveller"]["document"]["number"]) in planted)
            rows.append({"step": "check agent: token + lookups + alerts", "items": len(records), "seconds": best,
                         "per second": len(records) / best,
                         "note": f"{hits} alerts ({listed_hits} listed crossings + expired documents)"})
            given = [checked(b, tok) for b in batches]
            best = best_of(lambda: [check(g, replica.lookup) for g in given])
            rows.append({"step": "check only (token already computed in ingest)", "items": len(records),
                         "seconds": best, "per second": len(records) / best, "note": ""})
            replica.stop()
    print(f"\nWatchlist checks, {args.entries:,} list entries, {len(records):,} simulated crossings in batches of "
          f"{args.batch:,} (this machine, one core for the check)")
    print_table(rows, floats={"seconds": "{:.3f}", "per second": "{:,.0f}"})


def checked(batch: list[dict[str, Any]], tok: Tokeniser) -> list[Presented]:
    """What ingest hands the check for a batch: the traveller's token (made once, for the facts too) and more."""
    return [p for r in batch if (p := presented(r, person_token(tok, r["traveller"]))) is not None]


if __name__ == "__main__":
    main()
