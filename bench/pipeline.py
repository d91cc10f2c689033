"""End-to-end throughput and latency on a stack of the benchmark's own: every figure of one table, in one run.

    .venv/bin/python -m bench.pipeline [--events 100000] [--captures 20000] [--enrolled 100000 1000000]
                                       [--paced-rate 1000] [--paced-seconds 30] [--processes N]

A fresh stack (ports 24xxx, state in a temporary directory) and ``lintas worker
--processes N`` as a real process, as in production. What is timed:

* **floor**: fastavro decode and clickhouse-connect insert of the same crossings alone (one
  process, batches of 10,000, a scratch table): the rate no Python pipeline beats;
* **burst of crossings without captures**, with 1 and with N worker processes: every event
  framed and produced at once (a post's spool flushing after a day offline), timed from the
  first send to the last row's ``ingested_at``;
* **dedup**: a gallery of K enrolled identities (background identities of the simulator's
  default face model, sealed and written to ``biometric.gallery`` as the shards write them),
  then crossings that each carry a face capture, produced at once: decisions per second
  from the first send to the last decision's ``decided_at``, and the shards' 1:N searches
  beside the rate of the same index searched on its own (batches of 1,000, this process, the
  workers stopped), at each K;
* **paced**: crossings with captures at a steady rate: produce → row and produce → decision
  latency (Kafka CreateTime to ``ingested_at`` / the first ``decided_at``);
* worker resident memory with the largest gallery;
* **security's cost**: the N-process burst again on a second stack with TLS and authentication off
  (``LINTAS_SECURE=0``), beside the same burst with them on (the default).

Nothing polls ClickHouse while a run is timed: completion is read from the agents' committed
offsets in Kafka (each agent commits only once its rows are in ClickHouse); the times come from
the rows' own stamps, read once afterwards.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
from confluent_kafka import KafkaException, Producer

from agents.biometric import shard_of, template_bytes
from agents.dedup import IdentityState, Seen, ThresholdSet, identity_key
from agents.gallery import SampleIndex
from agents.keys import Purposes
from agents.sealing import SubjectSealer, person_key
from agents.shard import record_bytes
from agents.signing import signed_headers
from bench import BENCH_PORT_BASE, REPO, own_stack, print_table
from bench.profile import profiled
from infra.process import descendants, rss_bytes
from schemas.contracts import CROSSING_EVENT
from schemas.wire import SchemaIds, encode_payload, frame
from streams import clients
from streams.clients import clickhouse_client
from streams.keystores import FileKeyring, SqliteSubjectKeys
from streams.ops.lag import caught_up
from streams.posts import ensure_post_key
from streams.settings import Settings
from streams.sim.faces import ClusteredFaces
from streams.sim.simulator import Simulator
from streams.topics import AGENTS, BIOMETRIC_GALLERY, CROSSING_EVENTS, DEDUP_SHARDS, Role, agent_group


# -- the worker ---------------------------------------------------------------------------------------------------
@contextmanager
def worker(settings: Settings, processes: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``lintas worker --processes N`` on the bench stack, ready (every agent's group holds N members)."""
    env = {**os.environ, **settings.as_env()}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "lintas"), "worker", "--processes", str(processes)],
                            cwd=REPO, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_ready(settings, processes, proc)
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def wait_ready(settings: Settings, processes: int, proc: subprocess.Popen[bytes], timeout_s: float = 180) -> None:
    """Until every batch agent's group is stable with ``processes`` members (partitions handed out)."""
    admin = clients.admin(settings)
    groups = [agent_group(a) for a in AGENTS]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the worker exited with {proc.returncode}")
        try:
            described = [f.result() for f in admin.describe_consumer_groups(groups, request_timeout=10).values()]
        except KafkaException:  # a group not there yet: its coordinator is still being chosen
            described = []
        if described and all(str(d.state).endswith("STABLE") and len(d.members) == processes for d in described):
            return
        time.sleep(0.5)
    raise SystemExit(f"worker groups not stable with {processes} member(s) within {timeout_s:.0f}s")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (the ones still running)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


@contextmanager
def cpu_split(stack: Any, worker_pid: int) -> Iterator[dict[str, float]]:
    """CPU seconds each part of the stack spent while the block ran (worker, Kafka, ClickHouse, this benchmark)."""
    parts = {"worker": [worker_pid, *descendants(worker_pid)],
             "kafka": [p.pid() or 0 for p in stack.kafka.processes()],
             "clickhouse": [stack.clickhouse.process().pid() or 0], "registry": [stack.registry.process().pid() or 0],
             "bench": [os.getpid()]}
    before = {name: cpu_seconds(pids) for name, pids in parts.items()}
    out: dict[str, float] = {}
    yield out
    out.update({name: cpu_seconds(pids) - before[name] for name, pids in parts.items()})


# -- events -------------------------------------------------------------------------------------------------------
def crossings(seed: int, n: int, faces: bool, population: int = 5000) -> list[dict[str, Any]]:
    """``n`` simulated crossings of the last day: every one with a face capture (as at e-gates), or none."""
    sim = Simulator(seed=seed, dim=512, end=datetime.now(UTC) - timedelta(minutes=5), population=population)
    records = [r for kind, r in sim.events(n * 2 if faces else n, landings=0) if kind == "crossing"]
    if faces:
        return [r for r in records if r["biometric"] is not None][:n]
    for r in records:
        r["biometric"] = None
    return records[:n]


Message = tuple[bytes, bytes, list[tuple[str, str | bytes | None]]]


def framed(settings: Settings, records: list[dict[str, Any]]) -> list[Message]:
    """(key, Confluent-framed Avro, signature headers) of each crossing, keyed and signed by its post."""
    schema_id = SchemaIds(clients.registry(settings, Role.POST)).id_for(CROSSING_EVENTS.name, CROSSING_EVENT)
    out = []
    for r in records:
        post = r["post"]["post_id"]
        value = frame(schema_id, encode_payload(CROSSING_EVENT, r))
        out.append((post.encode(), value, signed_headers(post, ensure_post_key(settings, post), value)))
    return out


def produce(settings: Settings, messages: list[Message], rate: float | None = None) -> float:
    """Send to crossing_events (at ``rate`` per second, 20 steps a second, or at once); the wall time it started."""
    producer = Producer(clients.kafka_config(settings, Role.POST, **{
                                                          **clients.RELIABLE, **clients.SAME_PARTITION_AS_FAUST,
                                                          "linger.ms": 5, "compression.type": "lz4",
                                                          "queue.buffering.max.messages": 1_000_000}))
    started = time.time()
    step = max(1, int(rate // 20)) if rate else len(messages)
    t0 = time.monotonic()
    for s in range(0, len(messages), step):
        for key, value, headers in messages[s:s + step]:
            producer.produce(CROSSING_EVENTS.name, value, key, headers=headers)
        producer.poll(0)
        if rate:
            ahead = (s + step) / rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
    producer.flush(120)
    return started


def id_table(client: Any, records: list[dict[str, Any]]) -> str:
    table = f"bench_ids_{uuid.uuid4().hex[:8]}"
    client.command(f"CREATE TABLE {table} (event_id UUID) ENGINE = MergeTree ORDER BY event_id")
    client.insert(table, [[r["event_id"] for r in records]], column_names=["event_id"], column_oriented=True)
    return table


# -- runs ---------------------------------------------------------------------------------------------------------
def floor(settings: Settings, messages: list[tuple[bytes, bytes]]) -> float:
    """fastavro decode + clickhouse-connect insert of the same events, nothing else: events per second."""
    client = clickhouse_client(settings, compress="lz4")
    # the table as the migration user (DDL); the inserts as the pipeline's user, as the sink makes them
    clickhouse_client(settings, migrate=True).command(
        "CREATE TABLE IF NOT EXISTS bench_floor (event_id UUID, occurred_at DateTime64(3, 'UTC'), "
        "post_id String, direction String, nationality String, document_number String, "
        "travel_purpose String, origin_country String, destination_country String, quality Float32) "
        "ENGINE = MergeTree ORDER BY event_id")
    columns = ["event_id", "occurred_at", "post_id", "direction", "nationality", "document_number",
               "travel_purpose", "origin_country", "destination_country", "quality"]
    schema = CROSSING_EVENT.parsed
    t0 = time.perf_counter()
    for s in range(0, len(messages), 10_000):
        rows = []
        for _, value, _ in messages[s:s + 10_000]:
            r = fastavro.schemaless_reader(io.BytesIO(value[5:]), schema, None)
            doc = r["traveller"]["document"] or {}
            rows.append([r["event_id"], r["occurred_at"], r["post"]["post_id"], r["direction"],
                         r["traveller"]["nationality"], doc.get("number", ""), r["travel_purpose"],
                         r["origin_country"], r["destination_country"],
                         r["biometric"]["quality"] if r["biometric"] else 0.0])
        client.insert("bench_floor", rows, column_names=columns)
    return len(messages) / (time.perf_counter() - t0)


def burst(stack: Any, records: list[dict[str, Any]], processes: int, log: Path,
          captures: bool, profile: Path | None = None) -> dict[str, Any]:
    """Produce at once with N worker processes; rows/s (and decisions/s with captures), p50/p99 latencies."""
    settings = stack.settings
    messages = framed(settings, records)
    with worker(settings, processes, log) as proc:
        loaded = warm(settings, captures)
        t0 = time.monotonic()
        with (profiled(proc.pid, profile, log.stem) if profile else nullcontext(lambda: "")) as report, \
                cpu_split(stack, proc.pid) as cpu:
            started = produce(settings, messages)
            agents = ("ingest_crossings", "dedup_shards") if captures else ("ingest_crossings",)
            caught_up(settings, agents, timeout_s=3600)
        wall = time.monotonic() - t0
        rss = rss_bytes(proc.pid) or 0
        drained = caught_up(settings, tuple(AGENTS), timeout_s=3600)
    if profile:
        print(f"\nprofile of the workers during {log.stem}:\n{report()}\n", flush=True)
    return {**measured(settings, records, started, captures), "rss_mb": rss / 2**20, "drained_s": drained,
            "warm_s": loaded, "cores_used": {name: round(seconds / wall, 2) for name, seconds in cpu.items()}}


def warm(settings: Settings, captures: bool) -> float:
    """A few crossings through a fresh worker first (its watchlists read, and with captures its gallery shards
    read back) before the clock starts; the seconds that took."""
    t0 = time.monotonic()
    produce(settings, framed(settings, crossings(999, 200, faces=captures)))
    caught_up(settings, ("ingest_crossings", "dedup_shards") if captures else ("ingest_crossings",),
                     timeout_s=1800)
    return time.monotonic() - t0


def measured(settings: Settings, records: list[dict[str, Any]], started: float, captures: bool) -> dict[str, Any]:
    client = clickhouse_client(settings)
    admin = clickhouse_client(settings, migrate=True)  # the scratch table of ids: DDL
    ids = id_table(admin, records)
    start = datetime.fromtimestamp(started, UTC)
    n, last, p50, p99 = client.query(
        "SELECT count(), max(i), quantile(0.5)(d), quantile(0.99)(d) FROM (SELECT event_id, min(ingested_at) AS i, "
        "dateDiff('millisecond', any(produced_at), min(ingested_at)) AS d FROM crossings "
        f"WHERE event_id IN (SELECT event_id FROM {ids}) GROUP BY event_id)").result_rows[0]
    last = last.replace(tzinfo=UTC)  # clickhouse-connect gives naive UTC
    out: dict[str, Any] = {"events": len(records), "rows": n, "rows_s": n / max(1e-3, (last - start).total_seconds()),
                           "row_p50_ms": p50, "row_p99_ms": p99}
    if captures:
        decided, last_d, d50, d99, searched, kinds = client.query(
            "SELECT count(), max(t), quantile(0.5)(d), quantile(0.99)(d), "
            f"(SELECT count() FROM dedup_searches WHERE searched_at >= {{s:DateTime64(3)}}), "
            f"(SELECT groupUniqArray(index_kind) FROM dedup_searches WHERE searched_at >= {{s:DateTime64(3)}}) "
            "FROM (SELECT d.event_id, min(d.decided_at) AS t, dateDiff('millisecond', any(c.produced_at), "
            "min(d.decided_at)) AS d FROM dedup_decisions AS d INNER JOIN (SELECT event_id, any(produced_at) AS "
            f"produced_at FROM crossings WHERE event_id IN (SELECT event_id FROM {ids}) GROUP BY event_id) AS c "
            "ON d.event_id = c.event_id GROUP BY d.event_id)", parameters={"s": start}).result_rows[0]
        seconds = max(1e-3, (last_d.replace(tzinfo=UTC) - start).total_seconds()) if decided else float("nan")
        out.update({"decided": decided, "decided_s": decided / seconds, "decision_p50_ms": d50,
                    "decision_p99_ms": d99, "searches": searched, "searches_s": searched / DEDUP_SHARDS / seconds,
                    "index": ",".join(sorted(kinds))})
    admin.command(f"DROP TABLE {ids}")
    return out


# -- the gallery --------------------------------------------------------------------------------------------------
def seed_gallery(settings: Settings, first: int, count: int, gallery: dict[int, list[np.ndarray]],
                 people: list[np.ndarray]) -> float:
    """Enrol ``count`` background identities (one good capture each) as the shards would have: seconds taken.

    Their templates are sealed under person keys in the stack's key store, their identity
    records written to their shard's partition of biometric.gallery; the templates are kept
    in ``gallery`` (by shard) for the index measured on its own, the faces in ``people``.
    """
    t0 = time.monotonic()
    tok = Purposes.from_provider(FileKeyring(settings.keyring_path)).operations
    sealer = SubjectSealer(SqliteSubjectKeys(settings.subject_keys_path))
    faces = ClusteredFaces(512)
    model = faces.model_id
    gen = np.random.default_rng(first + 1)
    centres = faces.faces(gen, np.zeros((20, 512), dtype=np.float32))  # 20 populations
    producer = Producer(clients.kafka_config(settings, Role.WORKER, **{**clients.RELIABLE, "linger.ms": 20,
                                                          "compression.type": "lz4", "batch.num.messages": 10_000,
                                                          "queue.buffering.max.messages": 1_000_000}))
    now_ms = int(time.time() * 1000) - 86_400_000
    for s in range(first, first + count, 10_000):
        n = min(10_000, first + count - s)
        face = faces.faces(gen, centres[gen.integers(0, 20, n)])
        quality = np.clip(gen.normal(0.85, 0.05, n), 0.75, 1.0)
        templates = faces.captures(gen, face, quality)
        people.extend(face)
        tokens = [tok.token("document", "ZZB", f"B{i:09d}") for i in range(s, s + n)]
        probes = [f"seed-{i}" for i in range(s, s + n)]
        sealed = sealer.seal([(template_bytes(v), p, person_key(tk)) for v, p, tk in zip(templates, probes, tokens,
                                                                                          strict=True)])
        for i in range(n):
            key = identity_key(model, tokens[i])
            seen = Seen(probes[i], str(uuid.uuid4()), "crossing", "ID-CGK", now_ms, float(quality[i]), templates[i],
                        sealed[i])
            state = IdentityState(key, tokens[i], "document", model, window=[seen], version=0, seen=1)
            shard = shard_of(key, DEDUP_SHARDS)
            gallery.setdefault(shard, []).append(templates[i])
            while True:
                try:
                    producer.produce(BIOMETRIC_GALLERY.name, record_bytes(state, []), key.encode(),
                                     partition=shard)
                    break
                except BufferError:
                    producer.poll(0.1)
        producer.poll(0)
    producer.flush(600)
    return time.monotonic() - t0


def index_rate(settings: Settings, gallery: dict[int, list[np.ndarray]], people: list[np.ndarray],
               queries: int = 1000) -> tuple[float, str]:
    """1:N identifications per second of the shards' own indexes, on their own: every shard searched per query."""
    faces = ClusteredFaces(512)
    gen = np.random.default_rng(7)
    pick = gen.integers(0, len(people), queries)
    probes = faces.captures(gen, np.stack([people[i] for i in pick]), np.full(queries, 0.8))
    t = ThresholdSet.load(None).for_model(faces.model_id)
    indexes = []
    for shard, templates in sorted(gallery.items()):
        index = SampleIndex(512, settings.dedup_exact_max, settings.dedup_rerank, settings.dedup_nprobe)
        vectors = np.stack(templates)
        index.add([(shard, i) for i in range(len(vectors))], vectors, [f"{shard}/{i}" for i in range(len(vectors))])
        indexes.append(index)
    t0 = time.perf_counter()
    for index in indexes:
        index.search(probes, t.pair_floor - 1e-4, ["probe"] * queries)
    return queries / (time.perf_counter() - t0), ",".join(sorted({i.kind for i in indexes}))


@contextmanager
def kept_or_temporary(keep: Path | None) -> Iterator[str]:
    """``keep`` (made if missing, left behind with the workers' logs), else a temporary directory."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield str(keep)
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield tmp


# -- the table ----------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000, help="crossings of each burst without captures")
    parser.add_argument("--captures", type=int, default=20_000, help="crossings with a capture per dedup burst")
    parser.add_argument("--enrolled", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--paced-rate", type=float, default=1000.0)
    parser.add_argument("--paced-seconds", type=float, default=30.0)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--profile", type=Path, default=None, help="sample the workers with py-spy during each "
                        "timed burst; raw samples here, the top functions printed")
    parser.add_argument("--keep", type=Path, default=None, help="leave the stack's state and the workers' logs here")
    parser.add_argument("--no-security-comparison", action="store_true", help="skip the burst on a stack with "
                        "TLS and authentication off")
    args = parser.parse_args()
    def say(line: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)

    with kept_or_temporary(args.keep) as tmp, own_stack(tmp) as stack:
        settings = stack.settings
        logs = Path(tmp)
        from streams.cli.events import migrate_now

        migrate_now(settings)
        plain = crossings(501, args.events, faces=False)
        floor_s = floor(settings, framed(settings, plain))
        say(f"floor: {floor_s:,.0f} events/s")
        one = burst(stack, plain, 1, logs / "worker-1.log", captures=False, profile=args.profile)
        say(f"burst, 1 process: {one}")
        many = burst(stack, crossings(502, args.events, faces=False), args.processes,
                     logs / f"worker-{args.processes}.log", captures=False, profile=args.profile)
        say(f"burst, {args.processes} processes: {many}")
        gallery: dict[int, list[np.ndarray]] = {}
        people: list[np.ndarray] = []
        enrolled = 0
        dedup: list[tuple[int, dict[str, Any], float, str, float]] = []
        paced: dict[str, Any] = {}
        for k, target in enumerate(sorted(args.enrolled)):
            seeded = seed_gallery(settings, enrolled, target - enrolled, gallery, people)
            enrolled = target
            say(f"gallery: {enrolled:,} identities enrolled ({seeded:.0f}s)")
            own, kind = index_rate(settings, gallery, people)
            say(f"index on its own at {enrolled:,}: {own:,.0f} identifications/s ({kind})")
            run = burst(stack, crossings(600 + k, args.captures, faces=True), args.processes,
                        logs / f"worker-dedup-{enrolled}.log", captures=True, profile=args.profile)
            say(f"dedup at {enrolled:,}: {run}")
            dedup.append((enrolled, run, own, kind, run["rss_mb"]))
            if k == 0:
                records = crossings(700, int(args.paced_rate * args.paced_seconds), faces=True)
                with worker(settings, args.processes, logs / "worker-paced.log"):
                    warm(settings, captures=True)
                    started = produce(settings, framed(settings, records), rate=args.paced_rate)
                    caught_up(settings, ("ingest_crossings", "dedup_shards"), timeout_s=1800)
                paced = measured(settings, records, started, captures=True)
                say(f"paced at {args.paced_rate:.0f}/s: {paced}")
    insecure: dict[str, Any] = {}
    if not args.no_security_comparison:
        with kept_or_temporary(None) as tmp, own_stack(tmp, secure=False, port_base=BENCH_PORT_BASE + 1000) as stack:
            from streams.cli.events import migrate_now

            migrate_now(stack.settings)
            insecure = burst(stack, crossings(502, args.events, faces=False), args.processes,
                             Path(tmp) / "worker-insecure.log", captures=False)
            say(f"burst, {args.processes} processes, TLS and authentication off: {insecure}")

    print(f"\nLintas pipeline, this machine ({os.cpu_count()} cores), one run; worker processes: 1 and "
          f"{args.processes}")
    rows = [
        {"figure": "floor: fastavro decode + clickhouse-connect insert alone (1 process)",
         "measured": f"{floor_s:,.0f}/s", "target": "-"},
        {"figure": f"crossings → rows, no captures, burst of {args.events:,}, 1 process",
         "measured": f"{one['rows_s']:,.0f}/s ({one['rows_s'] / floor_s:.0%} of the floor)", "target": "-"},
        {"figure": f"crossings → rows, no captures, burst of {args.events:,}, {args.processes} processes",
         "measured": f"{many['rows_s']:,.0f}/s ({many['rows_s'] / floor_s:.0%} of the floor)",
         "target": "≥ 8,000/s"},
        {"figure": f"{args.processes} processes vs 1 (rows burst)",
         "measured": f"{many['rows_s'] / one['rows_s']:.2f}×", "target": "≥ 1.7×"},
    ]
    for enrolled, run, own, kind, rss in dedup:
        share = run["searches_s"] / own if own else float("nan")
        rows.append({"figure": f"dedup decisions/s, {args.captures:,} crossings with a capture each, "
                               f"{enrolled:,} enrolled",
                     "measured": f"{run['decided_s']:,.0f}/s (p99 {run['decision_p99_ms'] / 1000:,.1f} s)",
                     "target": "≥ 1,500/s" if enrolled <= 100_000 else "-"})
        rows.append({"figure": f"  1:N identifications/s in the stream vs the index on its own, {enrolled:,}",
                     "measured": f"{run['searches_s']:,.0f} vs {own:,.0f} ({share:.0%}; {kind})",
                     "target": "≥ 70 %" if enrolled >= 1_000_000 else "-"})
        rows.append({"figure": f"  worker RSS ({args.processes} processes), {enrolled:,} enrolled",
                     "measured": f"{rss:,.0f} MB", "target": "reported"})
    if insecure:
        rows.append({"figure": f"  same burst, {args.processes} processes, TLS + SASL + ACLs off (LINTAS_SECURE=0)",
                     "measured": f"{insecure['rows_s']:,.0f}/s (on: {many['rows_s']:,.0f}/s, "
                                 f"{many['rows_s'] / insecure['rows_s'] - 1:+.0%})", "target": "reported"})
    if paced:
        rows.append({"figure": f"produce → row p99, paced {args.paced_rate:,.0f}/s with captures",
                     "measured": f"{paced['row_p99_ms']:,.0f} ms (p50 {paced['row_p50_ms']:,.0f})",
                     "target": "≤ 1 s"})
        rows.append({"figure": "produce → dedup decision p99, same run",
                     "measured": f"{paced['decision_p99_ms']:,.0f} ms (p50 {paced['decision_p50_ms']:,.0f})",
                     "target": "≤ 2 s"})
    print_table(rows)


if __name__ == "__main__":
    main()
