"""Officers' review, the I/O around :mod:`agents.cases`: the queue and a case from ClickHouse, decisions to Kafka.

Shared by the review console and ``lintas review list|show|decide``. Decisions are never
written to ClickHouse here: they go to ``review.decisions`` as Avro ``ReviewDecision``
records, and the case agent applies them (so a replay, a crash or two consoles at once
cannot leave a case half-decided).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from agents.cases import OPEN_STATUSES, SEVERITY_RANK, check_form
from schemas.contracts import REVIEW_DECISION
from schemas.errors import InvalidMessage
from schemas.wire import SchemaIds, encode_payload, frame
from streams import clients
from streams.settings import Settings
from streams.topics import REVIEW_DECISIONS, Role

# severity first, then the oldest: what an officer should look at next
_SEVERITY_ORDER = "multiIf(severity = 'HIGH', 0, severity = 'MEDIUM', 1, 2)"
# posts None (ops, supervisors): every case; a list: the cases at any of those posts (none for an empty list)
_VISIBLE = "({all_posts:UInt8} = 1 OR hasAny(post_ids, {posts:Array(String)}))"


def send_decision(settings: Settings, *, target_kind: str, target_id: str, action: str, officer_id: str,
                  officer_role: str, post_id: str | None = None, reason_code: str | None = None,
                  pathway: str | None = None, case_version: int = 0, decision_id: str | None = None) -> str:
    """Send one decision to review.decisions and wait for Kafka's ack; its id. Bad form: :class:`InvalidMessage`."""
    check_form(action, reason_code, pathway)
    if target_kind not in ("CASE", "LINK"):
        raise InvalidMessage("unknown_target", "target_kind", "CASE or LINK")
    if not target_id.strip():
        raise InvalidMessage("missing_field", "target_id", "the case or link decided on")
    if not officer_id.strip():
        raise InvalidMessage("missing_field", "officer_id", "a decision needs the officer who made it")
    decision_id = decision_id or str(uuid.uuid4())
    record = {"decision_id": decision_id, "target_kind": target_kind, "target_id": target_id, "action": action,
              "reason_code": reason_code, "pathway": pathway, "officer_id": officer_id, "officer_role": officer_role,
              "post_id": post_id, "case_version": int(case_version), "decided_at": datetime.now(UTC)}
    ids = SchemaIds(clients.registry(settings, Role.REVIEW))
    schema_id = ids.id_for(REVIEW_DECISIONS.name, REVIEW_DECISION)
    producer = clients.producer(settings, Role.REVIEW, **clients.SAME_PARTITION_AS_FAUST)
    producer.produce(REVIEW_DECISIONS.name, key=target_id.encode(),
                     value=frame(schema_id, encode_payload(REVIEW_DECISION, record)))
    if producer.flush(30):
        raise RuntimeError("review.decisions did not acknowledge the decision; it was not sent")
    return decision_id


def queue(client: Any, posts: Sequence[str] | None, statuses: Sequence[str] = OPEN_STATUSES,
          limit: int = 200) -> list[dict[str, Any]]:
    """Cases in these statuses visible to ``posts`` (``None``: all), the most severe and oldest first."""
    # constants only; every value is a bound parameter
    sql = ("SELECT case_id, key_kind, key_token, status, severity, score, rules, post_ids, opened_at, "  # noqa: S608
           "last_seen, length(indicator_ids) AS indicators, reopened, version FROM cases FINAL "
           "WHERE status IN {statuses:Array(String)} AND " + _VISIBLE +
           " ORDER BY " + _SEVERITY_ORDER + ", opened_at, case_id LIMIT {limit:UInt32}")
    result = client.query(sql, parameters={"statuses": list(statuses), **_visibility(posts), "limit": limit})
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


def case_detail(client: Any, case_id: str, posts: Sequence[str] | None) -> dict[str, Any] | None:
    """A case with its indicators, related crossings (tokens only) and decisions; ``None`` if absent or not visible."""
    found = client.query(f"SELECT * FROM cases FINAL WHERE case_id = {{case_id:String}} AND {_VISIBLE}",  # noqa: S608
                         parameters={"case_id": case_id, **_visibility(posts)})
    if not found.result_rows:
        return None
    case = dict(zip(found.column_names, found.result_rows[0], strict=True))
    indicators = _rows(client, "SELECT alert_id, family, rule_id, rule_version, rules_version, indicators, severity, "
                               "status, explanation, features, evidence_event_ids, post_ids, first_seen, last_seen "
                               "FROM alerts FINAL WHERE alert_id IN {ids:Array(String)}",
                       {"ids": list(case["indicator_ids"])})
    indicators.sort(key=lambda i: (-SEVERITY_RANK.get(i["severity"], 0), i["first_seen"]))
    crossings = _rows(client, "SELECT event_id, occurred_at, post_id, direction, document_token, escort_tokens, "
                              "nationality, age_band, travel_purpose, visa_type, refused FROM crossings FINAL "
                              "WHERE toString(event_id) IN {ids:Array(String)} ORDER BY occurred_at LIMIT 200",
                      {"ids": list(case["evidence_event_ids"])})
    decisions = _rows(client, "SELECT decision_id, action, status_before, status_after, reason_code, pathway, "
                              "officer_token, officer_role, post_id, decided_at FROM case_decisions FINAL "
                              "WHERE case_id = {case_id:String} ORDER BY decided_at, decision_id",
                      {"case_id": case_id})
    return {"case": case, "indicators": indicators, "crossings": crossings, "decisions": decisions}


def _visibility(posts: Sequence[str] | None) -> dict[str, Any]:
    return {"all_posts": int(posts is None), "posts": list(posts or [])}


def _rows(client: Any, sql: str, parameters: dict[str, Any]) -> list[dict[str, Any]]:
    result = client.query(sql, parameters=parameters)
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]
