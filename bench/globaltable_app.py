"""A Faust app with one GlobalTable, for :mod:`bench.watchlist_globaltable` (not part of the pipeline).

Lintas' own App (its SafeConsumer) and the settings faust's GlobalTable docstring
asks for with several workers (one partition, recovery buffer of 1). Prints the
table's size every half second once the worker runs (timers start after recovery).
"""

from __future__ import annotations

import os

from streams.worker.faust_consumer import App

BROKER = os.environ.get("BENCH_BROKER", "127.0.0.1:9092")
app = App("lintas-bench-gt", broker=f"kafka://{BROKER}", store="memory://", web_enabled=False,
          web_bind="127.0.0.1", web_port=int(os.environ.get("BENCH_WEB_PORT", "6099")), value_serializer="raw",
          key_serializer="raw", topic_disable_leader=True, consumer_auto_offset_reset="earliest")
table = app.GlobalTable("gt-list", partitions=1, key_type=bytes, value_type=bytes, default=None,
                        recovery_buffer_size=1)


@app.timer(0.5)
async def report() -> None:
    """The table's size, for the benchmark to read."""
    print(f"SIZE {len(table)}", flush=True)
