"""Watchlists and overstay on the real stack: live list updates, hits and misses, nothing in clear, restarts.

Each test runs `lintas worker` as a real process and `lintas watchlist` as ops would,
then reads alerts and stays back from ClickHouse.
"""

from __future__ import annotations

import random
import re
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer

from infra.stack import Stack
from streams.clients import clickhouse_client, kafka_config
from streams.settings import Settings
from streams.topics import ALL_TOPICS, WATCHLISTS, Role
from tests.integration.conftest import migrated_stack, run_lintas
from tests.integration.pipeline_support import Worker, produce, until
from tests.integration.test_producer import _consume_messages

pytestmark = pytest.mark.integration

PORT_BASE = 25000  # below the ephemeral range (32768+)
HEADER = "issuing_state,number,reason,valid_from,valid_until,source\n"


@pytest.fixture(scope="module")
def wstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from migrated_stack(tmp_path_factory, "watchlist", PORT_BASE)


@pytest.fixture
def worker(wstack: Stack, tmp_path: Path) -> Iterator[Worker]:
    w = Worker(wstack.settings, tmp_path / "worker.log")
    yield w
    w.stop()


def number(prefix: str) -> str:
    """A synthetic document number, 9 characters (long enough that a scan cannot match it by chance)."""
    return f"{prefix}{uuid.uuid4().int % 10**8:08d}"


def event(doc: str, at: datetime, direction: str = "EXIT", nationality: str = "IDN", country: str = "IDN",
          visa: str | None = None, expiry: date | None = None, state: str = "IDN") -> dict[str, Any]:
    """A literal synthetic crossing at Batam (Indonesia) or Johor Bahru (Malaysia)."""
    post = {"IDN": ("ID-BTH", "SEA"), "MYS": ("MY-JBC", "LAND")}[country]
    return {
        "event_id": str(uuid.uuid4()), "occurred_at": at,
        "post": {"post_id": post[0], "post_type": post[1], "country": country}, "direction": direction,
        "traveller": {"document": {"document_type": "PASSPORT", "number": doc, "issuing_state": state,
                                   "expiry_date": expiry or (at + timedelta(days=900)).date()},
                      "given_names": "Synthetic", "surname": "Traveller", "date_of_birth": date(1990, 5, 17),
                      "sex": "F", "nationality": nationality},
        "travel_purpose": "TOURISM", "visa_type": visa, "placement_id": None, "sponsor": None, "companions": [],
        "carrier": None, "origin_country": "IDN", "destination_country": "SGP", "refused": False,
        "refusal_reason": None, "officer_id": "OFF-IDN-0100", "biometric": None,
    }


def alerts_for(settings: Settings, event_ids: list[str], family: str = "watchlist") -> dict[str, set[str]]:
    """Event id → rule ids of the alerts of that family whose evidence it is."""
    rows = clickhouse_client(settings).query(
        "SELECT arrayJoin(evidence_event_ids) AS e, rule_id FROM alerts FINAL WHERE family = {f:String} "
        "AND hasAny(evidence_event_ids, {ids:Array(String)})", parameters={"f": family, "ids": event_ids}).result_rows
    out: dict[str, set[str]] = {}
    for e, rule in rows:
        out.setdefault(e, set()).add(rule)
    return out


def ingested(settings: Settings, event_ids: list[str]) -> int:
    return int(clickhouse_client(settings).query(
        "SELECT uniqExact(event_id) FROM crossings WHERE toString(event_id) IN {ids:Array(String)}",
        parameters={"ids": event_ids}).result_rows[0][0])


def test_list_changes_take_effect_within_seconds_while_traffic_flows(wstack: Stack, worker: Worker,
                                                                     tmp_path: Path) -> None:
    """Hits, misses, a live load and a live removal, all without restarting the worker."""
    settings = wstack.settings
    now = datetime.now(UTC).replace(microsecond=0)
    early, later, never, future = number("P"), number("D"), number("N"), number("F")
    (tmp_path / "first.csv").write_text(
        HEADER + f"IDN,{early},STOLEN,2026-01-01,,\nIDN,{future},LOST,{(now + timedelta(days=30)).date()},,\n")
    loaded = run_lintas(settings, "watchlist", "load", str(tmp_path / "first.csv"), "--list", "lost_stolen")
    assert loaded.returncode == 0 and "2 entries published" in loaded.stdout, loaded.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + f"IDN,{later},STOLEN,,,\nIDN,{later},STOLEN,,,\nID,X1,LOST,,,\n")
    refused = run_lintas(settings, "watchlist", "load", str(bad), "--list", "lost_stolen")
    assert refused.returncode == 2 and "line 3: number" in refused.stderr and "line 4: issuing_state" in refused.stderr
    assert later not in refused.stderr + refused.stdout, "errors name lines and columns, never values"

    worker.start()
    fixed = [event(early, now - timedelta(minutes=5)), event(never, now - timedelta(minutes=5)),
             event(future, now - timedelta(minutes=5)), event(number("X"), now - timedelta(minutes=5),
                                                              expiry=(now - timedelta(days=3)).date())]
    produce(settings, fixed, tmp_path / "fixed.sqlite")
    ids = [e["event_id"] for e in fixed]
    until(lambda: ingested(settings, ids) == 4, 120, worker.log)
    hits = until(lambda: alerts_for(settings, ids) or None, 30, worker.log)
    time.sleep(2)
    hits = alerts_for(settings, ids)
    assert hits == {ids[0]: {"watchlist.lost_stolen"}, ids[3]: {"document.expired"}}, hits
    row = clickhouse_client(settings).query(
        "SELECT severity, post_ids, explanation, family FROM alerts FINAL WHERE has(evidence_event_ids, "
        "{e:String}) AND rule_id = 'watchlist.lost_stolen'", parameters={"e": ids[0]}).result_rows[0]
    assert row[0] == "HIGH" and row[1] == ["ID-BTH"] and "reason STOLEN" in row[2] and early not in row[2]

    # traffic for `later` every ~0.5 s; the list gains it, then loses it, while the worker runs
    sent: list[tuple[float, str]] = []
    stop = threading.Event()

    def flow() -> None:
        n = 0
        while not stop.is_set():
            e = event(later, datetime.now(UTC) - timedelta(seconds=1))
            produce(settings, [e], tmp_path / f"flow-{n % 2}.sqlite")
            sent.append((time.monotonic(), e["event_id"]))
            n += 1
            time.sleep(0.2)

    thread = threading.Thread(target=flow, daemon=True)
    thread.start()
    try:
        time.sleep(4)
        (tmp_path / "later.csv").write_text(HEADER + f"IDN,{later},STOLEN,,,INTERPOL-SLTD\n")
        load_started = time.monotonic()
        assert run_lintas(settings, "watchlist", "load", str(tmp_path / "later.csv"), "--list", "lost_stolen"
                      ).returncode == 0
        loaded_at = time.monotonic()
        time.sleep(12)
        remove_started = time.monotonic()
        removed = run_lintas(settings, "watchlist", "remove", "--list", "lost_stolen", "--document", f"IDN:{later}")
        assert removed.returncode == 0 and "1 removed" in removed.stdout, removed.stderr
        removed_at = time.monotonic()
        time.sleep(12)
    finally:
        stop.set()
        thread.join(10)
    flow_ids = [e for _, e in sent]
    until(lambda: ingested(settings, flow_ids) == len(flow_ids), 120, worker.log)
    time.sleep(3)
    hit = alerts_for(settings, flow_ids)
    first_hit = min(t for t, e in sent if e in hit) - loaded_at
    last_hit = max(t for t, e in sent if e in hit) - removed_at
    print(f"\nlist load → first hit for an event sent {first_hit:.1f}s after the load returned; removal → last hit "
          f"for an event sent {last_hit:.1f}s after the removal returned", file=sys.stderr)
    # An event is checked against the list as it is when the worker takes it (up to a batch window after it
    # was sent): events sent well before the load or well after the removal must not hit, and every event
    # sent from 5 s after the load returned until shortly before the removal must.
    for t, e in sent:
        if t < load_started - 2 or t > removed_at + 5:
            assert e not in hit, f"hit for an event sent {t - loaded_at:.1f}s after the load (not listed then)"
        if loaded_at + 5 < t < remove_started - 2:
            assert e in hit, f"no hit for an event sent {t - loaded_at:.1f}s after the load"
    assert sum(loaded_at + 5 < t < remove_started - 2 for t, _ in sent) >= 5
    assert worker.proc is not None and worker.proc.poll() is None
    text = worker.log.read_text()
    readers = re.findall(r"\[(\d+)\] \[INFO\] watchlists read:", text)
    assert readers and len(readers) == len(set(readers)), "each worker process read the lists once"
    assert " exited with " not in text, "no worker process restarted"


def test_no_list_document_number_reaches_a_topic_or_table_in_clear(wstack: Stack, worker: Worker,
                                                                   tmp_path: Path) -> None:
    """1,000 listed numbers, some presented at crossings: none in any non-restricted topic nor any table."""
    settings = wstack.settings
    numbers = [f"L{n:08d}" for n in random.sample(range(10**8), 1000)]  # distinct: a list names a document once
    (tmp_path / "big.csv").write_text(HEADER + "".join(f"IDN,{n},LOST,,,\n" for n in numbers))
    for name in ("notices", "national_alerts"):
        (tmp_path / f"{name}.csv").write_text(HEADER + f"IDN,{numbers[0]},{'YELLOW' if name == 'notices' else 'X1'},,,\n")
        assert run_lintas(settings, "watchlist", "load", str(tmp_path / f"{name}.csv"), "--list", name).returncode == 0
    assert run_lintas(settings, "watchlist", "load", str(tmp_path / "big.csv"), "--list", "lost_stolen",
                  "--replace").returncode == 0
    shown = run_lintas(settings, "watchlist", "show")
    assert re.search(r"lost_stolen +1000 entries", shown.stdout), shown.stdout  # --replace dropped the earlier ones
    worker.start()
    crossings = [event(n, datetime.now(UTC) - timedelta(minutes=2)) for n in numbers[:20]]
    produce(settings, crossings, tmp_path / "c.sqlite")
    ids = [e["event_id"] for e in crossings]
    until(lambda: len(alerts_for(settings, ids)) == 20, 120, worker.log)
    assert alerts_for(settings, ids[:1]) == {ids[0]: {"watchlist.lost_stolen", "watchlist.notices",
                                                      "watchlist.national_alerts"}}

    values = [n.encode() for n in numbers]
    restricted = {t.name for t in ALL_TOPICS if t.restricted}
    consumer = Consumer({**kafka_config(settings, Role.ADMIN), "group.id": "scan"})
    topics = sorted(consumer.list_topics(timeout=10).topics)
    consumer.close()
    assert {t.name for t in WATCHLISTS.values()} <= set(topics)
    scanned = {}
    for topic in topics:
        blob = b"\x00".join(b"\x00".join(m[2:]) for m in _consume_messages(settings, topic))
        found = [v for v in values if v in blob]
        if topic in restricted:
            scanned[topic] = len(found)
            continue
        assert not found, f"topic {topic} holds {len(found)} listed document number(s) in clear"
        scanned[topic] = len(blob)
    assert scanned["crossing_events"] == 20, "the scan finds them where they are: the restricted input topic"
    assert scanned[WATCHLISTS["lost_stolen"].name] > 1000 * 32, scanned
    client = clickhouse_client(settings)
    tables = [r[0] for r in client.query("SELECT name FROM system.tables WHERE database = currentDatabase() "
                                         "AND engine NOT LIKE '%View%'").result_rows]
    for table in tables:
        blob = client.raw_query(f"SELECT * FROM {table} FORMAT TSV")
        assert not [v for v in values if v in blob], f"table {table} holds listed document numbers"
    audit = client.query("SELECT sum(records) FROM processing_log WHERE component = 'watchlist' "
                         "AND activity = 'store'").result_rows[0][0]
    assert audit >= 1002, "every load is in the record of processing"


def test_overstay_pairs_entry_and_exit_across_a_worker_restart(wstack: Stack, worker: Worker, tmp_path: Path) -> None:
    """Entries 50 days ago; kill -9; exits after: the late one is flagged, the missing one shows in the view."""
    settings = wstack.settings
    now = datetime.now(UTC).replace(microsecond=0)
    late, on_time, missing, resident = number("S"), number("S"), number("S"), number("S")
    entries = [event(doc, now - timedelta(days=50), "ENTRY", nationality="MYS", visa="VISA_FREE", state="MYS")
               for doc in (late, on_time, missing)]
    entries.append(event(resident, now - timedelta(days=50), "ENTRY"))  # a national coming home: no stay
    worker.start()
    produce(settings, entries, tmp_path / "entries.sqlite")
    client = clickhouse_client(settings)
    stay_ids = [e["event_id"] for e in entries[:3]]

    def stays() -> dict[str, tuple[Any, ...]]:
        rows = client.query("SELECT stay_id, status, overstay_days, last_permitted_day FROM stays FINAL "
                            "WHERE stay_id IN {ids:Array(String)}", parameters={"ids": stay_ids}).result_rows
        return {r[0]: r[1:] for r in rows}

    until(lambda: len(stays()) == 3, 120, worker.log)
    assert {s[0] for s in stays().values()} == {"open"}
    time.sleep(4)  # the batch committed: after the kill, the open stays can only come back from the changelog
    worker.kill9()

    worker.start()
    exits = [event(late, now - timedelta(days=5), nationality="MYS", visa="VISA_FREE", state="MYS"),
             event(on_time, now - timedelta(days=25), nationality="MYS", visa="VISA_FREE", state="MYS"),
             event(resident, now - timedelta(days=5))]
    produce(settings, exits, tmp_path / "exits.sqlite")
    until(lambda: sorted(s[0] for s in stays().values()) == ["closed", "closed", "open"], 120, worker.log)
    got = stays()
    last_day = (now - timedelta(days=50)).date() + timedelta(days=29)
    assert got[stay_ids[0]] == ("closed", ((now - timedelta(days=5)).date() - last_day).days, last_day)
    assert got[stay_ids[1]] == ("closed", 0, last_day) and got[stay_ids[2]] == ("open", 0, last_day)
    flagged = until(lambda: alerts_for(settings, [exits[0]["event_id"]], "overstay"), 60, worker.log)
    assert flagged == {stay_ids[0]: {"overstay"}, exits[0]["event_id"]: {"overstay"}}, "entry and exit: the evidence"
    assert alerts_for(settings, [exits[1]["event_id"], exits[2]["event_id"]], "overstay") == {}
    over = client.query("SELECT stay_id, kind, days_over FROM overstays WHERE stay_id IN {ids:Array(String)} "
                        "ORDER BY kind", parameters={"ids": stay_ids}).result_rows
    assert over == [(stay_ids[0], "left_late", got[stay_ids[0]][1]),
                    (stay_ids[2], "no_exit", (datetime.now(UTC).date() - last_day).days)]
    regional = client.query("SELECT kind, sum(stays) FROM overstays_regional WHERE country = 'IDN' "
                            "AND nationality = 'MYS' GROUP BY kind ORDER BY kind").result_rows
    assert regional == [("left_late", 1), ("no_exit", 1)]
    assert client.query("SELECT count() FROM stays WHERE stay_id = {e:String}",
                        parameters={"e": exits[2]["event_id"]}).result_rows[0][0] == 0, "residents have no stay"
