"""What the pipeline's integration modules share: a real `lintas worker` process, simulated events, counts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from agents.signing import signed_headers
from streams.clients import clickhouse_client, kafka_config
from streams.post.producer import Forwarder, accept_records
from streams.post.spool import Spool
from streams.posts import ensure_post_key
from streams.settings import Settings
from streams.sim.simulator import Simulator
from streams.topics import CROSSING_EVENTS, Role, agent_group
from tests.conftest import REPO, settings_env
from tests.integration.test_producer import _event_ids


class Worker:
    """`lintas worker` as a real process in its own process group."""

    def __init__(self, settings: Settings, log: Path, env: dict[str, str] | None = None) -> None:
        self.settings, self.log = settings, log
        # _simulate's templates; every capture searchable, so only the planted poison is dead-lettered here
        self.env = {"LINTAS_DEDUP_DIMENSION": "32", "LINTAS_DEDUP_QUALITY_FLOOR": "0", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, **settings_env(self.settings), "LINTAS_SINK_BATCH_SIZE": "1000",
               "LINTAS_SINK_BATCH_SECONDS": "0.5", **self.env}
        self.proc = subprocess.Popen([str(Path(sys.executable).parent / "lintas"), "worker"], cwd=REPO, env=env,
                                     stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def simulate(seed: int, n: int) -> list[dict[str, Any]]:
    sim = Simulator(seed=seed, dim=32, days=1, end=datetime.now(UTC) - timedelta(hours=1), population=2000)
    return [r for kind, r in sim.events(n, landings=0) if kind == "crossing"]


def produce(settings: Settings, records: list[dict[str, Any]], spool_path: Path) -> None:
    spool = Spool(spool_path)
    accept_records(records, "crossing", spool)
    forwarder = Forwarder(settings, spool)
    assert forwarder.pump(timeout_s=120)
    forwarder.close()


def load_ids(settings: Settings, ids: list[str]) -> str:
    table = f"expected_{uuid.uuid4().hex[:8]}"
    # a scratch table (survives restarts): DDL, so the migration user's; the rows go in as the pipeline's
    clickhouse_client(settings, migrate=True).command(
        f"CREATE TABLE {table} (event_id UUID) ENGINE = MergeTree ORDER BY event_id")
    clickhouse_client(settings).insert(table, [(i,) for i in ids], column_names=["event_id"])
    return table


def row_counts(settings: Settings, expected: str) -> dict[str, int]:
    client = clickhouse_client(settings)
    q = lambda sql: client.query(sql).result_rows[0][0]  # noqa: E731
    return {
        "final": q(f"SELECT count() FROM crossings FINAL WHERE event_id IN (SELECT event_id FROM {expected})"),
        "distinct": q(f"SELECT uniqExact(event_id) FROM crossings WHERE event_id IN (SELECT event_id FROM {expected})"),
        "raw": q(f"SELECT count() FROM crossings WHERE event_id IN (SELECT event_id FROM {expected})"),
    }


def wait_for(settings: Settings, expected: str, n: int, timeout_s: float, log: Path) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    counts = row_counts(settings, expected)
    while counts["distinct"] < n and time.monotonic() < deadline:
        time.sleep(1)
        counts = row_counts(settings, expected)
    if counts["distinct"] != n:
        pytest.fail(f"{counts} after {timeout_s}s; {missing(settings, expected)}; worker log tail:\n"
                    + log.read_text()[-3000:])
    return row_counts(settings, expected)  # once more: "final" was read before the last rows landed


def missing(settings: Settings, expected: str) -> str:
    """Where the expected events that have no row sit in the input topic, and what the group committed there."""
    client = clickhouse_client(settings)
    missing = {str(r[0]) for r in client.query(
        f"SELECT event_id FROM {expected} WHERE event_id NOT IN (SELECT event_id FROM crossings)").result_rows}
    where = [(p, o) for _, _, p, o in _event_ids(settings, missing)]
    dead = client.query("SELECT count() FROM dead_letters WHERE source_topic = {t:String}",
                        parameters={"t": CROSSING_EVENTS.name}).result_rows[0][0]
    consumer = Consumer({**kafka_config(settings, Role.ADMIN), "group.id": agent_group("ingest_crossings")})
    parts = [TopicPartition(CROSSING_EVENTS.name, p) for p, _ in where]
    committed = {tp.partition: tp.offset for tp in consumer.committed(parts, timeout=10)} if parts else {}
    consumer.close()
    return (f"{len(missing)} missing at (partition, offset) {where[:20]}, {len(where)} found in the input topic; "
            f"group committed {committed}; {dead} dead letters from the input topic")


def view_total(settings: Settings) -> int:
    client = clickhouse_client(settings)
    return int(client.query("SELECT sum(n) FROM (SELECT uniqExactMerge(events) AS n FROM crossings_by_post_hour "
                            "GROUP BY post_country, post_id, direction, hour)").result_rows[0][0] or 0)


def until(check: Any, timeout_s: float, log: Path) -> Any:
    """Poll ``check()`` until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    while not (result := check()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert result, f"not reached in {timeout_s}s; worker log tail:\n" + log.read_text()[-3000:]
    return result


def signed(settings: Settings, post: str, value: bytes) -> list[tuple[str, str | bytes | None]]:
    """The headers of an event sent by ``post`` (signed with its key, as ``lintas produce`` does)."""
    return signed_headers(post, ensure_post_key(settings, post), value)
