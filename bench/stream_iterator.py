"""Per-event cost of faust's two stream iterators: the Cython one it ships, and the Python one Lintas runs.

Lintas' streams (``streams.worker.faust_consumer.SafeStream``) always take faust's pure-Python
iterator, because the Cython one drops a message it skips in a rebalance without
telling the consumer. This measures what that choice costs: events through a
stream over an in-memory channel (no broker), the same for both classes.

    python -m bench.stream_iterator --events 200000
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import faust
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from bench import print_table
from streams.worker.faust_consumer import App, SafeStream


async def _run(stream_class: type[faust.Stream], n: int) -> float:
    """Seconds for ``n`` events to come out of a stream of ``stream_class`` (queued beforehand)."""
    app = App("lintas-bench-iterator", broker="kafka://127.0.0.1:9", Stream=stream_class)
    app.consumer.ack = lambda message: True  # the consumer's bookkeeping is the same for both
    channel = app.channel(maxsize=n + 1)
    stream = app.stream(channel)
    app.consumer_generation_id = 1
    app.flow_control.resume()
    tp = TP("bench", 0)
    for offset in range(n):
        message = ConsumerMessage(tp.topic, 0, offset, 0.0, 0, None, b"k", b"v", None, tp=tp, generation_id=1)
        message.refcount = 1
        await channel.put(channel._create_event(b"k", b"v", {}, message))
    seen, started = 0, time.perf_counter()
    async for _ in stream:
        seen += 1
        if seen == n:
            break
    return time.perf_counter() - started


def main() -> None:
    """Best of three runs per iterator, as a table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for label, cls in (("faust.Stream (Cython iterator)", faust.Stream), ("SafeStream (Python iterator)", SafeStream)):
        seconds = min(asyncio.run(_run(cls, args.events)) for _ in range(3))
        rows.append({"stream": label, "events": args.events, "seconds": seconds,
                     "events/s": round(args.events / seconds), "µs/event": seconds / args.events * 1e6})
    print_table(rows, {"µs/event": "{:.2f}"})


if __name__ == "__main__":
    main()
