"""Data-protection operations run by people (``lintas export``, ``lintas identity``): the I/O around the pure parts.

Each writes its own record of processing (a refused export too) to the audit
topic and the ``processing_log`` table, exactly as the agents do.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from agents.audit import Processing
from agents.export import ExportRefused, Table, authorise, package
from agents.privacy import policy
from agents.sealing import SubjectSealer
from agents.vault import VAULT_CLASSES, open_entry
from schemas.errors import LintasError
from streams import clients
from streams.clients import clickhouse_client
from streams.compacted import read_partition
from streams.keystores import SqliteSubjectKeys
from streams.settings import Settings
from streams.topics import AUDIT_PROCESSING, IDENTITY_VAULT, Role

AGGREGATE_CLASSES = ("QUASI_IDENTIFIER", "CRIME_RECORD")

# Each table: name, dimensions, measures, SQL over the analytics tables for [start, end).
REGIONAL_TABLES = (
    ("corridors_weekly", ("week", "post_country", "origin_country", "destination_country", "direction"),
     ("events", "travellers"),
     "SELECT toMonday(occurred_at) AS week, post_country, origin_country, destination_country, direction, "
     "uniqExact(event_id) AS events, uniqExact(document_token) AS travellers FROM crossings "
     "WHERE occurred_at >= {start:DateTime64(3)} AND occurred_at < {end:DateTime64(3)} "
     "GROUP BY week, post_country, origin_country, destination_country, direction ORDER BY ALL"),
    ("nationality_monthly", ("month", "post_country", "nationality", "direction"), ("events", "travellers"),
     "SELECT toStartOfMonth(occurred_at) AS month, post_country, nationality, direction, "
     "uniqExact(event_id) AS events, uniqExact(document_token) AS travellers FROM crossings "
     "WHERE occurred_at >= {start:DateTime64(3)} AND occurred_at < {end:DateTime64(3)} "
     "GROUP BY month, post_country, nationality, direction ORDER BY ALL"),
    ("refusals_monthly", ("month", "post_country", "refusal_reason"), ("events", "travellers"),
     "SELECT toStartOfMonth(occurred_at) AS month, post_country, refusal_reason, uniqExact(event_id) AS events, "
     "uniqExact(document_token) AS travellers FROM crossings WHERE refused = 1 "
     "AND occurred_at >= {start:DateTime64(3)} AND occurred_at < {end:DateTime64(3)} "
     "GROUP BY month, post_country, refusal_reason ORDER BY ALL"),
    ("alerts_monthly", ("month", "rule_id", "severity"), ("alerts", "travellers"),
     "SELECT toStartOfMonth(first_seen) AS month, rule_id, severity, uniqExact(alert_id) AS alerts, "
     "uniqExact(arrayJoin(if(empty(subjects), [key_token], subjects))) AS travellers FROM alerts FINAL "
     "WHERE status = 'ACTIVE' AND first_seen >= {start:DateTime64(3)} AND first_seen < {end:DateTime64(3)} "
     "GROUP BY month, rule_id, severity ORDER BY ALL"),
)


def audit(settings: Settings, records: list[Processing]) -> None:
    """Record processing done outside the worker: audit topic, then the processing_log table."""
    producer = clients.producer(settings, Role.WORKER)
    for r in records:
        producer.produce(AUDIT_PROCESSING.name, value=r.to_json())
    if producer.flush(30):
        raise RuntimeError("the audit topic did not acknowledge the record of processing")
    with clickhouse_client(settings) as client:
        rows = [r.row() for r in records]
        client.insert("processing_log", [list(row.values()) for row in rows], column_names=list(rows[0]))


def _disclosure_detail(case: str, purpose: str) -> str:
    """The audit detail of a disclosure: the case, and the stated purpose on one line (bounded)."""
    stated = " ".join(purpose.split())[:160]
    return f"case {case.strip()[:64]}" + (f"; purpose: {stated}" if stated else "")


class NotInVault(LintasError):
    """No identity for this token: never vaulted, or erased (tombstoned)."""

    code = "not_in_vault"


def resolve_identity(settings: Settings, token: str, case: str, *, purpose: str = "") -> dict[str, Any]:
    """Who is behind an operations person token, for an officer working ``case``; recorded as a disclosure.

    Reads the token's latest vault record and opens it with the person's key:
    :class:`NotInVault` if there is none, :class:`~agents.sealing.KeyDestroyed` if they were erased.
    ``purpose``, the officer's stated reason (the review console asks for one), goes into the audit detail.
    """
    if not case.strip():
        raise LintasError("case: a disclosure needs the case or alert it is for")
    latest: bytes | None = None
    for partition in range(IDENTITY_VAULT.partitions):
        for key, value in read_partition(settings, IDENTITY_VAULT.name, partition):
            if key == token.encode():
                latest = value
    if latest is None:
        raise NotInVault("no identity in the vault for this token (never seen, or erased)")
    store = SqliteSubjectKeys(settings.subject_keys_path)
    try:
        identity = open_entry(SubjectSealer(store), token, latest)
    finally:
        store.close()
    audit(settings, [Processing("identity_vault", "disclose", "operations",
                                VAULT_CLASSES, 1, IDENTITY_VAULT.name,
                                "officer", detail=_disclosure_detail(case, purpose))])
    return identity


def regional_export(settings: Settings, destination: str, consent_basis: str | None, start: date, end: date,
                    out: Path) -> dict[str, Any]:
    """Aggregates for a partner state, small cells suppressed, to ``out``; refused (and audited) if not allowed."""
    pol = policy()
    source = f"clickhouse:{settings.clickhouse_database}"
    try:
        auth = authorise(destination, consent_basis, pol)
    except ExportRefused as err:
        audit(settings, [Processing("regional_export", "transfer", "regional", AGGREGATE_CLASSES, 0, source,
                                    f"partner:{destination[:3]}", outcome="refused", detail=str(err))])
        raise
    bounds = {"start": datetime.combine(start, time(), UTC),
              "end": datetime.combine(end + timedelta(days=1), time(), UTC)}  # the whole last day
    tables = []
    with clickhouse_client(settings) as client:
        for name, dims, measures, sql in REGIONAL_TABLES:
            rows = [tuple(r) for r in client.query(sql, parameters=bounds).result_rows]
            tables.append(Table(name, dims, measures, rows))
    document = package(tables, auth, pol, (start, end), source)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1, sort_keys=True))
    manifest = document["manifest"]
    audit(settings, [Processing("regional_export", "transfer", "regional", AGGREGATE_CLASSES,
                                sum(manifest["cells"].values()), source, f"partner:{destination}",
                                detail=f"basis {auth.basis}; k={pol.export_k}; "
                                       f"{sum(manifest['suppressed'].values())} cells suppressed; "
                                       f"sha256 {manifest['sha256'][:16]}")])
    return document
