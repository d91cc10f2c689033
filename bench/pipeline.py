"""End-to-end pipeline: produce → Kafka → Faust worker → rows visible in ClickHouse.

    .venv/bin/python -m bench.pipeline [--events 50000] [--paced-rate 500]

Runs on the local stack (started if needed) with the stack's background worker.
Two runs: a burst as fast as the producer can go (throughput), and a paced run
(latency at a steady load). Latency is per row: Kafka produce timestamp to the
moment the row was written (``ingested_at``), read back from ClickHouse.
Prints a table, and the worker's resident memory.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from infra.process import rss_bytes
from infra.stack import Stack
from streams.clients import clickhouse_client
from streams.producer import Forwarder, send_paced
from streams.settings import load_settings
from streams.simulator import Simulator
from streams.spool import Spool


def _wait_for_ids(client, table: str, ids_table: str, n: int) -> None:
    """Poll until ``table`` holds ``n`` distinct event ids of ``ids_table``."""
    while client.query(f"SELECT uniqExact(event_id) FROM {table} WHERE event_id IN "
                       f"(SELECT event_id FROM {ids_table})").result_rows[0][0] < n:
        time.sleep(0.2)


def run(settings, n: int, rate: float | None, seed: int, tmp: Path) -> tuple[float, ...]:
    """Send ``n`` crossings (paced at ``rate`` or as fast as possible).

    Returns (seconds, events/s, p50 ms, p99 ms) for rows in ``crossings``, then the same
    for dedup decisions (``dedup_decisions``, every capture verified at its identity's shard).
    """
    sim = Simulator(seed=seed, dim=512, end=datetime.now(UTC) - timedelta(minutes=5), population=5000)
    records = [r for kind, r in sim.events(n, landings=0) if kind == "crossing"]
    client = clickhouse_client(settings)
    table = f"bench_ids_{uuid.uuid4().hex[:8]}"
    client.command(f"CREATE TABLE {table} (event_id UUID) ENGINE = MergeTree ORDER BY event_id")
    client.insert(table, [(r["event_id"],) for r in records], column_names=["event_id"])
    spool = Spool(tmp / f"bench-{seed}.sqlite")
    forwarder = Forwarder(settings, spool)
    t0 = time.monotonic()
    send_paced(forwarder, spool, records, "crossing", rate, steps_per_second=20)
    forwarder.pump(timeout_s=600)
    forwarder.close()
    _wait_for_ids(client, "crossings", table, n)
    seconds = time.monotonic() - t0
    p50, p99 = client.query(
        "SELECT quantile(0.5)(d), quantile(0.99)(d) FROM (SELECT min(dateDiff('millisecond', produced_at, "
        f"ingested_at)) AS d FROM crossings WHERE event_id IN (SELECT event_id FROM {table}) GROUP BY event_id)"
    ).result_rows[0]
    floor = settings.dedup_quality_floor  # captures below it are dead-lettered, never searched
    captures = sum(1 for r in records if r["biometric"] and r["biometric"]["quality"] >= floor)
    _wait_for_ids(client, "dedup_decisions", table, captures)
    dedup_seconds = time.monotonic() - t0
    d50, d99 = client.query(
        "SELECT quantile(0.5)(d), quantile(0.99)(d) FROM (SELECT dateDiff('millisecond', c.produced_at, "
        f"min(d.decided_at)) AS d FROM dedup_decisions AS d INNER JOIN (SELECT event_id, any(produced_at) AS "
        f"produced_at FROM crossings WHERE event_id IN (SELECT event_id FROM {table}) GROUP BY event_id) AS c "
        "ON d.event_id = c.event_id GROUP BY d.event_id, c.produced_at)"
    ).result_rows[0]
    client.command(f"DROP TABLE {table}")
    return (seconds, n / seconds, float(p50), float(p99),
            dedup_seconds, captures / dedup_seconds, float(d50), float(d99), captures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--paced-rate", type=float, default=500.0)
    parser.add_argument("--paced-seconds", type=float, default=30.0)
    args = parser.parse_args()
    settings = load_settings()
    stack = Stack(settings)
    stack.up(say=lambda _: None)
    stack.start_worker(say=lambda _: None)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        burst = run(settings, args.events, None, seed=501, tmp=Path(tmp))
        rows.append(("burst (as fast as possible)", args.events, *burst))
        paced_n = int(args.paced_rate * args.paced_seconds)
        paced = run(settings, paced_n, args.paced_rate, seed=502, tmp=Path(tmp))
        rows.append((f"paced at {args.paced_rate:.0f} events/s", paced_n, *paced))
    rss = rss_bytes(stack.worker().pid() or 0)
    print("\nEnd-to-end pipeline (simulated crossings, 512-d templates; one worker, 6 partitions)")
    print(f"{'run':<30} {'events':>8} {'seconds':>8} {'events/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for name, n, secs, eps, p50, p99, *_ in rows:
        print(f"{name:<30} {n:>8,} {secs:>8.1f} {eps:>9,.0f} {p50:>8,.0f} {p99:>8,.0f}")
    print("\nBiometric dedup on the same runs (capture -> 1:1 decision at its identity's shard)")
    print(f"{'run':<30} {'captures':>8} {'seconds':>8} {'decided/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for name, _, *_, dsecs, dps, d50, d99, captures in rows:
        print(f"{name:<30} {captures:>8,} {dsecs:>8.1f} {dps:>9,.0f} {d50:>8,.0f} {d99:>8,.0f}")
    print(f"worker resident memory after the runs: {rss / 2**20:.0f} MB" if rss else "worker not running")


if __name__ == "__main__":
    main()
