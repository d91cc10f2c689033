"""``lintas erase``: crypto-shred one person, remove or anonymise their ClickHouse rows, tell the agents, prove it.

Order matters: the keys go first, so whatever happens after, every sealed copy of the
person (vault identity, gallery and probe templates; on every segment, replica and
backup) is already unreadable; each later step is idempotent, so a failed erasure is
finished by running it again. Then the running agents are told (an ERASE command to
every gallery shard, ERASE facts for the rule state), compacted topics get tombstones,
ClickHouse rows are deleted or their tokens blanked, and everything is counted again:
the proof records the counts before and after, and an erasure that leaves a row fails. Each
gallery shard reports the index rows (opened templates) it took out and that none is left; the
proof waits for all of them and is verified only then.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from agents.audit import Processing
from agents.biometric import LINK_COMMAND, erase_command, shard_of
from agents.cases import case_id, forget_command
from agents.dedup import identity_key
from agents.erasure import MUTATIONS, ErasureTarget, Refs, parameters, proof_digest
from agents.keys import live_tokenisers
from agents.privacy import policy
from agents.trafficking.facts import Fact
from schemas.contracts import ALERT
from schemas.errors import LintasError
from schemas.wire import SchemaIds, avro_bytes, encode_payload, frame
from streams import clients
from streams.clients import clickhouse_client
from streams.keystores import FileKeyring, SqliteSubjectKeys
from streams.ops.privacy import audit
from streams.settings import Settings
from streams.sql import scalar
from streams.topics import (
    ALERTS,
    BIOMETRIC_GALLERY,
    BIOMETRIC_LINKS,
    BIOMETRIC_PAIRS,
    BIOMETRIC_PROBES,
    CASE_COMMANDS,
    CROSSING_EVENTS,
    DEDUP_SHARDS,
    IDENTITY_VAULT,
    TRAFFICKING_FACTS,
    Role,
)

log = logging.getLogger("lintas.erasure")
ERASED_CLASSES = ("BIOMETRIC", "CHILD", "CRIME_RECORD", "DIRECT_IDENTIFIER", "QUASI_IDENTIFIER")


class ErasureHeld(LintasError):
    """The person is the subject of an alert (a possible case): erasure needs a recorded legal basis."""

    code = "erasure_held"


class ErasureIncomplete(LintasError):
    """Rows of the person remained after the mutations; the proof is written with the counts, and it fails."""

    code = "erasure_incomplete"


def _producer(settings: Settings) -> Producer:
    # murmur2: the partitioner Faust's producer (aiokafka) and Java clients use, so a tombstone or an ERASE
    # fact keyed like the original lands on the original's partition
    return clients.producer(settings, Role.WORKER, **clients.SAME_PARTITION_AS_FAUST)


def _rows(client: Any, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    result = client.query(sql, parameters=params)
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


def _index_confirmed(client: Any, erasure_id: str, wait_s: float) -> dict[str, Any]:
    """What the gallery shards reported taking out of their 1:N indexes (opened templates) for this erasure.

    Each shard's worker records it in the record of processing when it applies the ERASE command;
    this waits up to ``wait_s`` for all of them (a pipeline that is not running applies it later).
    """
    deadline = time.monotonic() + wait_s
    while True:
        rows = _rows(client, "SELECT destination, sum(records) AS removed, countIf(outcome != 'ok') AS left "
                             "FROM processing_log WHERE component = 'dedup_shards' AND source = {source:String} "
                             "GROUP BY destination", {"source": f"request:{erasure_id}"})
        if len(rows) >= DEDUP_SHARDS or time.monotonic() >= deadline:
            break
        time.sleep(1)
    return {"shards": DEDUP_SHARDS, "shards_confirmed": len(rows), "rows_removed": sum(r["removed"] for r in rows),
            "shards_with_rows_left": sum(r["left"] > 0 for r in rows)}


def erase(settings: Settings, person_text: str, basis: str | None = None, proof_dir: Path | None = None,
          now: datetime | None = None, wait_s: float = 120.0) -> dict[str, Any]:
    """Erase one person; returns the proof (also written to ``proof_dir``). See the module docstring.

    ``wait_s``: how long to wait for every gallery shard to confirm its index rows are gone.
    """
    now = now or datetime.now(UTC)
    erasure_id = str(uuid.uuid4())
    person = ErasureTarget.parse(person_text)
    ring = FileKeyring(settings.keyring_path)
    refs = Refs.of(person, live_tokenisers(ring, "operations"), live_tokenisers(ring, "analytics"))
    with clickhouse_client(settings) as client:
        found = _rows(client, "SELECT DISTINCT subject_id, model, identity_token FROM dedup_decisions "
                              "WHERE identity_token IN {ops:Array(String)} AND subject_id != ''",
                      {"ops": list(refs.operations)})
        refs = Refs(refs.operations, refs.analytics, tuple(sorted({r["subject_id"] for r in found})))
        records = sorted({identity_key(r["model"], r["identity_token"]) for r in found})
        params = parameters(refs)
        held = _rows(client, "SELECT alert_id, rule_id FROM alerts FINAL WHERE key_token IN "
                             "{pseudonyms:Array(String)}", params)
        if held and not basis:
            audit(settings, [Processing("erasure", "delete", "operations", ERASED_CLASSES, 0, f"request:{erasure_id}",
                                        "clickhouse+kafka", outcome="refused",
                                        detail=f"subject of {len(held)} alert(s); no legal basis recorded")])
            raise ErasureHeld(f"the person is the subject of {len(held)} alert(s) "
                              f"({', '.join(sorted({h['rule_id'] for h in held}))}); erasure during a possible "
                              "case needs --basis (the exemption or decision that allows it)")
        before = {f"{m.table}.{m.action}": scalar(client, m.count_sql(), params)
                  for m in MUTATIONS}
        raw = _rows(client, "SELECT DISTINCT source_partition AS p, source_offset AS o, produced_at FROM crossings "
                            "WHERE document_token IN {analytics:Array(String)}", params)
        links = _rows(client, "SELECT DISTINCT link_id FROM dedup_links WHERE identity_token IN {ops:Array(String)} "
                              "OR subject_identity_token IN {ops:Array(String)} OR subject_id IN "
                              "{subjects:Array(String)} OR linked_subject_id IN {subjects:Array(String)}", params)
        own_alerts = [h["alert_id"] for h in held]
        named = _rows(client, "SELECT * EXCEPT (evidence_count, version, detected_at) FROM alerts FINAL "
                              "WHERE hasAny(subjects, {pseudonyms:Array(String)}) "
                              "AND key_token NOT IN {pseudonyms:Array(String)}", params)
        # every case that may hold them, also one whose row is not written yet: their own keys' and the keys
        # of the alerts naming them
        keys = [f"doc:{t}" for t in refs.operations] + [f"subject:{s}" for s in refs.subjects] + \
            [f"{a['key_kind']}:{a['key_token']}" for a in named]
        cases = sorted({case_id(k) for k in keys} | {r["case_id"] for r in _rows(
            client, "SELECT DISTINCT case_id FROM cases WHERE key_token IN {pseudonyms:Array(String)} OR "
                    "hasAny(subjects, {pseudonyms:Array(String)})", params)})

        # 1. crypto-shredding: from here on no sealed copy of the person can be opened
        store = SqliteSubjectKeys(settings.subject_keys_path)
        destroyed = store.destroy(refs.keys())
        store.close()

        # 2. the running agents forget them; compacted topics drop their records
        producer = _producer(settings)
        for shard in range(DEDUP_SHARDS):
            for token in refs.operations:
                producer.produce(BIOMETRIC_PROBES.name, partition=shard,
                                 value=erase_command(refs.subjects, token, now, erasure_id))
        fact_keys = {f"doc:{t}": t for t in refs.operations} | {f"subject:{s}": s for s in refs.subjects}
        for alert in named:
            for pseudonym in refs.pseudonyms:
                if pseudonym in alert["subjects"]:
                    fact_keys.setdefault(f"{alert['key_kind']}:{alert['key_token']}", pseudonym)
        for key, token in fact_keys.items():
            producer.produce(TRAFFICKING_FACTS.name, key=key.encode(), value=Fact(
                key=key, role="ERASE", event_id=erasure_id, occurred_at=now, traveller=token).to_bytes())
        for case in cases:  # the case agent forgets them: their own case whole, their token in others'
            producer.produce(CASE_COMMANDS.name, key=case.encode(), value=forget_command(refs.pseudonyms))
        for token in refs.operations:
            producer.produce(IDENTITY_VAULT.name, key=token.encode(), value=None)
        for key in records:
            producer.produce(BIOMETRIC_GALLERY.name, key=key.encode(), value=None,
                             partition=shard_of(key, DEDUP_SHARDS))
        for link in links:
            producer.produce(BIOMETRIC_LINKS.name, key=link["link_id"].encode(), value=None)
            producer.produce(BIOMETRIC_PAIRS.name, key=link["link_id"].encode(), value=avro_bytes(LINK_COMMAND, {
                "kind": "UNPAIR", "link_id": link["link_id"], "model": "", "pair": "", "score": 0.0, "sides": [],
                "erased": True, "status": "", "officer_token": "", "decided_at": now}))
        for alert_id in own_alerts:
            producer.produce(ALERTS.name, key=alert_id.encode(), value=None)
        if named:  # others' alerts, again without the person
            schema_id = SchemaIds(clients.registry(settings, Role.WORKER)).id_for(
                ALERTS.name, ALERT)
            for alert in named:
                record = {**alert, "subjects": [s for s in alert["subjects"] if s not in refs.pseudonyms]}
                for name in ("first_seen", "last_seen"):
                    record[name] = record[name].replace(tzinfo=UTC)
                producer.produce(ALERTS.name, key=alert["alert_id"].encode(),
                                 value=frame(schema_id, encode_payload(ALERT, record)))
        if producer.flush(60):
            raise LintasError("Kafka did not acknowledge the erasure's commands and tombstones; run it again")

        # 3. ClickHouse: the person's rows deleted, their tokens blanked in others' rows
        for m in MUTATIONS:
            if before[f"{m.table}.{m.action}"]:
                client.command(m.sql(), parameters=params)
        after = {f"{m.table}.{m.action}": scalar(client, m.count_sql(), params) for m in MUTATIONS}
        index = _index_confirmed(client, erasure_id, wait_s)

    retention_ms = policy().retention[CROSSING_EVENTS.retention].ms
    expiry = max((r["produced_at"] for r in raw), default=None)
    body: dict[str, Any] = {
        "erasure_id": erasure_id, "requested_at": now.isoformat(), "completed_at": datetime.now(UTC).isoformat(),
        "person_reference_sha256": refs.reference(), "basis": basis or "data subject's request",
        "policy_version": policy().version,
        "keys_destroyed": {"person": sum(k.startswith("person:") for k in destroyed),
                           "subject": sum(k.startswith("subject:") for k in destroyed)},
        "biometric_subjects": len(refs.subjects), "clickhouse_rows_before": before, "clickhouse_rows_after": after,
        "kafka": {"tombstones": {IDENTITY_VAULT.name: len(refs.operations), BIOMETRIC_GALLERY.name: len(records),
                                 BIOMETRIC_LINKS.name: len(links), ALERTS.name: len(own_alerts)},
                  "alerts_rewritten_without_the_person": len(named),
                  "erase_commands": {BIOMETRIC_PROBES.name: DEDUP_SHARDS * len(refs.operations),
                                     BIOMETRIC_PAIRS.name: len(links), TRAFFICKING_FACTS.name: len(fact_keys),
                                     CASE_COMMANDS.name: len(cases)}},
        "remaining_until_retention": {
            "topic": CROSSING_EVENTS.name, "messages": len(raw),
            "coordinates": sorted(f"{r['p']}:{r['o']}" for r in raw),
            "deleted_by": (expiry.replace(tzinfo=UTC) + timedelta(milliseconds=retention_ms)).isoformat()
            if expiry and retention_ms > 0 else None,
            "note": "raw input in clear on a restricted topic; Kafka deletes it at the end of its retention",
        },
        "gallery_index": index,
        "verified": not any(after.values()) and index["shards_confirmed"] == index["shards"]
        and not index["shards_with_rows_left"],
    }
    body["sha256"] = proof_digest(body)
    out_dir = proof_dir or settings.state_dir / "erasures"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{erasure_id}.json").write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
    total = sum(before.values())
    audit(settings, [Processing("erasure", "delete", "operations", ERASED_CLASSES, total, f"request:{erasure_id}",
                                "clickhouse+kafka", outcome="ok" if body["verified"] else "incomplete",
                                detail=f"{len(destroyed)} keys destroyed, {len(refs.subjects)} biometric subject(s), "
                                       f"basis: {'recorded' if basis else 'request'}")])
    if not body["verified"]:
        raise ErasureIncomplete(f"rows remain after erasure {erasure_id}: "
                                + ", ".join(f"{k} {v}" for k, v in after.items() if v))
    return body
