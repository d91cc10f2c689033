"""CPU per event of each agent's handler, without Kafka or ClickHouse: what one core can do per agent.

The real handlers over in-memory senders, sink and tables (:class:`streams.worker.testing.MemoryWorker`),
each batch's effects made to hold in the worker's own order, fed what the agent before them sent:
simulated crossings (Avro, Confluent-framed) → ingest → its captures → dedup shards (each command
they send on, SEARCH and FORGET included, until none is left) → its facts and ingest's → rules
(state tables written once per key per batch, as the agent does). One process; the profile's top
entries with ``--profile``.

    python -m bench.handlers [--crossings 20000] [--faces | --no-faces] [--profile ingest|dedup|rules]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agents.signing import signed_headers
from bench import print_table
from schemas.contracts import CROSSING_EVENT
from schemas.wire import encode_payload, frame
from streams.sim.simulator import Simulator
from streams.topics import BIOMETRIC_PROBES, CROSSING_EVENTS, TRAFFICKING_FACTS
from streams.worker.runtime import Record
from streams.worker.testing import MemoryWorker, memory_services, records

POST_KEY = bytes(range(32))  # every post's key here: each record is signed as its post signs it


def build(tmp: Path) -> MemoryWorker:
    return MemoryWorker(memory_services(tmp, lambda post: POST_KEY))


async def run(n: int, faces: bool, profile: str | None) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        worker = build(Path(tmp))
        ids, sink = worker.services.ids, worker.sink
        sim = Simulator(seed=11, dim=512, end=datetime.now(UTC) - timedelta(hours=1), population=5000)
        crossings = [r for kind, r in sim.events(n, landings=0) if kind == "crossing"]
        if not faces:
            for r in crossings:
                r["biometric"] = None
        schema_id = ids.id_for(CROSSING_EVENTS.name, CROSSING_EVENT)
        now = datetime.now(UTC).timestamp()
        values = [frame(schema_id, encode_payload(CROSSING_EVENT, r)) for r in crossings]
        batch = [Record(CROSSING_EVENTS.name, i % 6, i // 6, now, None, v,
                        tuple(signed_headers(r["post"]["post_id"], POST_KEY, v)))
                 for i, (r, v) in enumerate(zip(crossings, values, strict=True))]
        rows = []

        async def timed(name: str, agent: str, size: int, events: list[Record], unit: str) -> None:
            prof = cProfile.Profile() if profile == name else None
            t0, c0 = time.perf_counter(), time.process_time()
            if prof:
                prof.enable()
            for i in range(0, len(events), size):
                await worker.handle(agent, events[i:i + size])
            if prof:
                prof.disable()
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
            rows.append({"handler": name, "records": len(events), "per": unit, "seconds": seconds,
                         "records/s": len(events) / seconds if seconds else 0.0,
                         "crossings/s": len(crossings) / seconds if seconds else 0.0,
                         "µs CPU / crossing": cpu / len(crossings) * 1e6})
            if prof:
                pstats.Stats(prof).sort_stats("tottime").print_stats(20)

        await timed("ingest", "ingest_crossings", 5000, batch, "crossing")
        refused = len(batch) - len(sink.rows.get("crossings", []))
        if refused:  # a figure for dead-lettering is not the figure for ingest
            raise SystemExit(f"{refused:,} of {len(batch):,} crossings were dead-lettered: nothing measured")
        if faces:  # every command the shards send goes round again until none is left (SEARCH, FORGET)
            commands = records(BIOMETRIC_PROBES.name, worker.sent(BIOMETRIC_PROBES.name))
            seen = len(commands)
            t0, c0, total = time.perf_counter(), time.process_time(), 0
            prof = cProfile.Profile() if profile == "dedup" else None
            if prof:
                prof.enable()
            offset = 10**6
            while commands:
                total += len(commands)
                sender = worker.sender("dedup_shards")
                before = len(sender.sent.get(BIOMETRIC_PROBES.name, []))
                for i in range(0, len(commands), 1000):
                    await worker.handle("dedup_shards", commands[i:i + 1000])
                commands = records(BIOMETRIC_PROBES.name, sender.sent[BIOMETRIC_PROBES.name][before:],
                                   first_offset=offset)
                offset += 10**6
            if prof:
                prof.disable()
                pstats.Stats(prof).sort_stats("tottime").print_stats(20)
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
            rows.append({"handler": "dedup shards", "records": total, "per": f"command ({seen:,} captures)",
                         "seconds": seconds, "records/s": total / seconds, "crossings/s": len(crossings) / seconds,
                         "µs CPU / crossing": cpu / len(crossings) * 1e6})
        facts = records(TRAFFICKING_FACTS.name, worker.sent(TRAFFICKING_FACTS.name))
        await timed("rules", "trafficking_rules", 2000, facts, "fact")
        return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--crossings", type=int, default=20_000)
    parser.add_argument("--faces", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--profile", choices=["ingest", "dedup", "rules"], default=None)
    args = parser.parse_args()
    rows = asyncio.run(run(args.crossings, args.faces, args.profile))
    print(f"\nHandlers without a broker: {args.crossings:,} simulated crossings "
          f"({'with' if args.faces else 'without'} face captures), one process")
    print_table(rows, {"seconds": "{:.2f}", "records/s": "{:,.0f}", "crossings/s": "{:,.0f}",
                       "µs CPU / crossing": "{:,.0f}"})


if __name__ == "__main__":
    main()
