"""Producer throughput: JSONL file → validated and spooled → acknowledged by Kafka.

    .venv/bin/python -m bench.producer [--events 20000] [--dim 512]

Starts the local stack if it is not running (default ports). Prints a table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from infra.stack import Stack
from streams.post.producer import Forwarder, ProduceReport, accept_lines, read_lines
from streams.post.spool import Spool
from streams.posts import load_registry
from streams.settings import load_settings
from streams.sim.files import write_files
from streams.sim.simulator import Simulator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=512)
    args = parser.parse_args()
    settings = load_settings()
    Stack(settings).up(say=lambda _: None)

    with tempfile.TemporaryDirectory() as tmp:
        sim = Simulator(seed=99, dim=args.dim, end=datetime.now(UTC) - timedelta(hours=1))
        paths = write_files(sim, args.events, Path(tmp), landings=0)
        size_mb = paths["crossing"].stat().st_size / 2**20
        spool = Spool(Path(tmp) / "outbox.sqlite")
        report = ProduceReport()
        t0 = time.perf_counter()
        accept_lines(read_lines(str(paths["crossing"])), "crossing", spool, report, load_registry(settings))
        t1 = time.perf_counter()
        forwarder = Forwarder(settings, spool)
        done = forwarder.pump(timeout_s=600)
        forwarder.close()
        t2 = time.perf_counter()
    assert done and report.accepted == args.events and not report.bad

    n = args.events
    rows = [
        ("validate + spool (JSONL → durable outbox)", n, t1 - t0),
        ("forward (outbox → acks=all from Kafka)", n, t2 - t1),
        ("end to end (JSONL → acknowledged)", n, t2 - t0),
    ]
    print(f"\nProducer throughput, {n:,} crossing events, {args.dim}-d templates, JSONL {size_mb:.0f} MB")
    print(f"{'stage':<44} {'events':>8} {'seconds':>8} {'events/s':>10}")
    for stage, count, secs in rows:
        print(f"{stage:<44} {count:>8,} {secs:>8.2f} {count / secs:>10,.0f}")


if __name__ == "__main__":
    main()
