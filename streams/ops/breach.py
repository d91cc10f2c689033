"""``lintas breach-report``: which data classes and how many people a breach in a time window may have touched.

UU PDP 27/2022 (art. 46) requires written notice to the subjects and the authority
within 3 × 24 hours of a breach: the personal data involved, when and how, and the
handling. This report gives the first two from what Lintas itself recorded: the
record of processing (``processing_log``: which component handled which data class,
where it went, how many records) and the stores (distinct people per class among
what was written in the window). Counts are of pseudonymous tokens, so a person is
counted once per class however often they crossed; landed persons without a
document are counted per landing (an upper bound).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from agents.privacy import policy
from streams.clients import clickhouse_client
from streams.settings import Settings
from streams.sql import scalar

NOTIFY_WITHIN = timedelta(hours=72)

# Data class → (how its people are counted, SQL over the window [start, end) of processing time).
SUBJECTS: dict[str, tuple[str, str]] = {
    "DIRECT_IDENTIFIER": (
        "travellers and landed persons",
        "SELECT (SELECT uniqExact(if(document_token != '', document_token, name_token)) FROM crossings "
        "WHERE ingested_at >= {start:DateTime64(3)} AND ingested_at < {end:DateTime64(3)}) + "
        "(SELECT sum(persons_registered) FROM landings "
        "WHERE ingested_at >= {start:DateTime64(3)} AND ingested_at < {end:DateTime64(3)})"),
    "QUASI_IDENTIFIER": (
        "travellers and landed persons",
        "SELECT (SELECT uniqExact(if(document_token != '', document_token, name_token)) FROM crossings "
        "WHERE ingested_at >= {start:DateTime64(3)} AND ingested_at < {end:DateTime64(3)}) + "
        "(SELECT sum(persons_registered) FROM landings "
        "WHERE ingested_at >= {start:DateTime64(3)} AND ingested_at < {end:DateTime64(3)})"),
    "CHILD": (
        "minors",
        "SELECT (SELECT uniqExact(if(document_token != '', document_token, name_token)) FROM crossings "
        "WHERE is_minor = 1 AND ingested_at >= {start:DateTime64(3)} AND ingested_at < {end:DateTime64(3)}) + "
        "(SELECT sum(minors) FROM landings "
        "WHERE ingested_at >= {start:DateTime64(3)} AND ingested_at < {end:DateTime64(3)})"),
    "CRIME_RECORD": (
        "travellers refused entry or exit",
        "SELECT uniqExact(if(document_token != '', document_token, name_token)) FROM crossings "
        "WHERE refused = 1 AND ingested_at >= {start:DateTime64(3)} AND ingested_at < {end:DateTime64(3)}"),
    "BIOMETRIC": (
        "people whose biometric capture was searched",
        "SELECT uniqExact(identity_token) FROM dedup_decisions "
        "WHERE decided_at >= {start:DateTime64(3)} AND decided_at < {end:DateTime64(3)}"),
}

PROCESSING = (
    "SELECT arrayJoin(data_classes) AS class, component, destination, sum(records) AS records "
    "FROM processing_log WHERE processed_at >= {start:DateTime64(3)} AND processed_at < {end:DateTime64(3)} "
    "AND outcome != 'refused' GROUP BY class, component, destination HAVING records > 0 ORDER BY ALL"
)


def breach_report(settings: Settings, start: date, end: date, discovered_at: datetime | None = None) -> dict[str, Any]:
    """The report for processing between ``start`` and the end of ``end`` (UTC days)."""
    discovered_at = discovered_at or datetime.now(UTC)
    pol = policy()
    bounds = {"start": datetime.combine(start, time(), UTC),
              "end": datetime.combine(end + timedelta(days=1), time(), UTC)}  # the whole last day
    classes: dict[str, dict[str, Any]] = {}
    with clickhouse_client(settings) as client:
        for cls, component, destination, records in client.query(PROCESSING, parameters=bounds).result_rows:
            entry = classes.setdefault(cls, {"records": 0, "where": []})
            entry["records"] += int(records)
            entry["where"].append(f"{component} → {destination}")
        for cls, (who, sql) in SUBJECTS.items():
            subjects = scalar(client, sql, bounds)
            if subjects or cls in classes:
                entry = classes.setdefault(cls, {"records": 0, "where": []})
                entry.update(subjects=subjects, counted_as=who)
    for cls, entry in classes.items():
        spec = pol.classes.get(cls)
        entry["specific"] = bool(spec and spec.specific)  # UU PDP art. 4(2): biometric, child, crime records
        entry["treatment"] = spec.transform if spec else "keep"
        entry.setdefault("subjects", None)
    return {
        "window": {"from": bounds["start"].isoformat(), "to": bounds["end"].isoformat()},
        "discovered_at": discovered_at.isoformat(),
        "notify_by": (discovered_at + NOTIFY_WITHIN).isoformat(),
        "policy_version": pol.version,
        "classes": dict(sorted(classes.items())),
    }


def render(report: dict[str, Any]) -> str:
    """The report as a plain table for the notification draft."""
    lines = [f"Breach report: processing from {report['window']['from']} to {report['window']['to']}",
             f"Discovered {report['discovered_at']}; notify subjects and the authority by {report['notify_by']} "
             f"(3 x 24 h, UU PDP art. 46). Policy {report['policy_version']}.", "",
             f"{'data class':<18} {'specific':<8} {'analytics':<10} {'people':>8}  {'records':>9}  counted as"]
    for cls, e in report["classes"].items():
        people = "-" if e["subjects"] is None else str(e["subjects"])
        lines.append(f"{cls:<18} {'yes' if e['specific'] else 'no':<8} {e['treatment']:<10} {people:>8}  "
                     f"{e['records']:>9}  {e.get('counted_as', '')}")
    return "\n".join(lines)
