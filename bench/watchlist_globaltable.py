"""Why the watchlists are not a Faust GlobalTable: time for a new worker to hold a 1,000,000-entry list.

The same entries in one compacted topic, read to the end by (a) a Faust worker with a
GlobalTable over that topic as its changelog (faust-streaming 0.15, Lintas' App, one
partition, recovery buffer 1 as faust's docstring asks for several workers; agents
and timers wait until recovery ends) and (b) :class:`streams.watchlist_replica.Replica`.
Own Kafka on ports 24xxx.

    python -m bench.watchlist_globaltable --entries 1000000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from bench import REPO, own_stack, print_table
from streams.clients import kafka_config
from streams.topics import Role, TopicSpec
from streams.watchlist_replica import Replica

CHANGELOG = "lintas-bench-gt-gt-list-changelog"  # the changelog faust names for bench.globaltable_app's table


def main() -> None:
    """Run and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # plaintext, no ACLs: what is compared is reading a topic to its end, which TLS costs both copies alike;
        # the throwaway Faust app below has no credentials (the pipeline's Faust app does)
        with own_stack(tmp, secure=False) as stack:
            settings = stack.settings
            admin = AdminClient(kafka_config(settings, Role.ADMIN))
            admin.create_topics([NewTopic(CHANGELOG, 1, 1, config={"cleanup.policy": "compact"})])[CHANGELOG].result()
            producer = Producer({**kafka_config(settings, Role.ADMIN), "linger.ms": 50})
            for i in range(args.entries):
                while True:
                    try:
                        producer.produce(CHANGELOG, key=f"{i:032x}".encode(), value=b"v" * 60)
                        break
                    except BufferError:
                        producer.poll(0.1)
            producer.flush(120)

            t0 = time.perf_counter()
            replica = Replica(settings, {"list": TopicSpec(CHANGELOG, 1, "watchlist", "compact")})
            replica.start()
            replica.wait(args.timeout)
            secs = time.perf_counter() - t0
            rows.append({"copy": "streams.watchlist_replica.Replica", "entries": replica.sizes()["list"],
                         "seconds": secs, "entries/s": replica.sizes()["list"] / secs, "note": "ingest waits for it"})
            replica.stop()

            env = {**os.environ, "BENCH_BROKER": settings.kafka_bootstrap, "PYTHONPATH": str(REPO)}
            t0 = time.perf_counter()
            worker = subprocess.Popen([str(Path(sys.executable).parent / "faust"), "-A", "bench.globaltable_app",
                                       "worker", "--without-web", "-l", "warn"], cwd=tmp, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            size, secs, tail = 0, float("nan"), []
            assert worker.stdout is not None
            for line in worker.stdout:
                tail = [*tail[-20:], line]
                if "SIZE " in line:
                    size = int(line.rsplit("SIZE ", 1)[1].split()[0])
                    if size >= args.entries:
                        secs = time.perf_counter() - t0
                        break
                if time.perf_counter() - t0 > args.timeout:
                    break
            worker.terminate()
            worker.wait(30)
            if size < args.entries:  # a row of zeros would read as a measurement
                raise SystemExit("the Faust worker did not reach the list's size; its last lines:\n" + "".join(tail))
            rows.append({"copy": "Faust GlobalTable (worker start)", "entries": size, "seconds": secs,
                         "entries/s": size / secs, "note": "every agent of the worker waits for it"})
    print(f"\nA new worker's copy of a {args.entries:,}-entry list (this machine)")
    print_table(rows, floats={"seconds": "{:.1f}", "entries/s": "{:,.0f}"})


if __name__ == "__main__":
    main()
