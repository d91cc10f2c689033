"""CPU per event of each agent's handler, without Kafka or ClickHouse: what one core can do per agent.

The real handlers (:func:`streams.worker.handlers.handlers`) over in-memory senders, sink and
tables (:mod:`streams.worker.testing`), fed what the agent before them sent: simulated
crossings (Avro, Confluent-framed) → ingest → its captures → dedup shards (each command
they send on, SEARCH and FORGET included, until none is left) → its facts and ingest's →
rules (state tables written once per key per batch, as the agent does). Single thread,
one process; the profile's top entries with ``--profile``.

    python -m bench.handlers [--crossings 20000] [--faces | --no-faces] [--profile ingest|dedup|rules]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agents.ingest import TemplatePolicy
from agents.keys import FileKeyring, Purposes
from agents.sealing import SqliteSubjectKeys, SubjectSealer
from agents.signing import signed_headers
from agents.vault import Recent
from bench import print_table
from schemas.contracts import CROSSING_EVENT
from schemas.wire import SchemaIds, encode_payload, frame
from streams.settings import Settings
from streams.sim.simulator import Simulator
from streams.topics import BIOMETRIC_PROBES, CROSSING_EVENTS, TRAFFICKING_FACTS
from streams.worker.handlers import Services, handlers
from streams.worker.runtime import Record
from streams.worker.testing import MemoryOutlets, MemoryRegistry, MemorySink, NoLists, records

POST_KEY = bytes(range(32))  # every post's key here: each record is signed as its post signs it


def build(tmp: Path) -> tuple[Any, MemoryOutlets, SchemaIds, MemorySink]:
    settings = Settings(state_dir=tmp)
    keyring = FileKeyring(tmp / "keyring.json")
    keys = SqliteSubjectKeys(tmp / "subject_keys.sqlite3")
    ids = SchemaIds(MemoryRegistry({"url": "mock://bench"}))
    sink = MemorySink()
    svc = Services(settings=settings, ids=ids, keyring=keyring, keys=Purposes.from_provider(keyring),
                   sink=sink, executor=ThreadPoolExecutor(max_workers=1), subject_keys=keys,
                   sealer=SubjectSealer(keys), vaulted=Recent(), templates=TemplatePolicy(512, 0.3),
                   watchlists=NoLists(), post_keys=lambda post: POST_KEY)
    out = MemoryOutlets()
    return handlers(svc, out.outlets), out, ids, sink


async def run(n: int, faces: bool, profile: str | None) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        worker, out, ids, sink = build(Path(tmp))
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

        async def timed(name: str, size: int, handler: Any, events: list[Record], unit: str,
                        tables: tuple[Any, ...] = ()) -> None:
            prof = cProfile.Profile() if profile == name else None
            t0, c0 = time.perf_counter(), time.process_time()
            if prof:
                prof.enable()
            for i in range(0, len(events), size):
                await handler.process(events[i:i + size])
                for table in tables:
                    table.write()
            if prof:
                prof.disable()
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
            rows.append({"handler": name, "records": len(events), "per": unit, "seconds": seconds,
                         "records/s": len(events) / seconds if seconds else 0.0,
                         "crossings/s": len(crossings) / seconds if seconds else 0.0,
                         "µs CPU / crossing": cpu / len(crossings) * 1e6})
            if prof:
                pstats.Stats(prof).sort_stats("tottime").print_stats(20)

        await timed("ingest", 5000, worker.crossings, batch, "crossing")
        refused = len(batch) - len(sink.rows.get("crossings", []))
        if refused:  # a figure for dead-lettering is not the figure for ingest
            raise SystemExit(f"{refused:,} of {len(batch):,} crossings were dead-lettered: nothing measured")
        if faces:  # every command the shards send goes round again until none is left (SEARCH, FORGET)
            commands = records(BIOMETRIC_PROBES.name, out.sent(BIOMETRIC_PROBES.name))
            seen = len(commands)
            shards = worker.dedup
            t0, c0, total = time.perf_counter(), time.process_time(), 0
            prof = cProfile.Profile() if profile == "dedup" else None
            if prof:
                prof.enable()
            offset = 10**6
            while commands:
                total += len(commands)
                sender = out.senders["dedup_shards"]
                before = len(sender.sent.get(BIOMETRIC_PROBES.name, []))
                for i in range(0, len(commands), 1000):
                    await shards.process(commands[i:i + 1000])
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
        facts = records(TRAFFICKING_FACTS.name, out.sent(TRAFFICKING_FACTS.name))
        await timed("rules", 2000, worker.rules, facts, "fact",
                    (out.outlets.trafficking_state, out.outlets.stay_state))
        return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--crossings", type=int, default=20_000)
    parser.add_argument("--faces", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--profile", choices=["ingest", "dedup", "rules"], default=None)
    args = parser.parse_args()
    rows = asyncio.run(run(args.crossings, args.faces, args.profile))
    print(f"\nHandlers without a broker: {args.crossings:,} simulated crossings "
          f"({'with' if args.faces else 'without'} face captures), one thread")
    print_table(rows, {"seconds": "{:.2f}", "records/s": "{:,.0f}", "crossings/s": "{:,.0f}",
                       "µs CPU / crossing": "{:,.0f}"})


if __name__ == "__main__":
    main()
