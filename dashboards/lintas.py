# ruff: noqa: S608  -- the only value put into SQL here is K, an int from the privacy policy
"""The analysts' dashboards: regional flows, one border post, trafficking alerts, deduplication, pipeline health.

Regional dashboards are seen by analysts outside the operating state (partner
directorates, the Bali Process RSO): every count in them is suppressed below
k (the privacy policy's ``export_k``, as the regional export does), either
as NULL in a time series or by leaving the cell out of a bar chart. Dashboards
for the operating state show pseudonymous ids (operations tokens, cut to 12
characters) and no clear identity; ClickHouse holds none to show.
"""

from __future__ import annotations

from agents.privacy import policy
from dashboards.model import Dashboard, Panel, Variable

K = policy().export_k

COUNTRY = Variable("country", "Country (post)",
                   "SELECT DISTINCT post_country FROM crossings_by_post_hour ORDER BY post_country")
POST = Variable("post", "Border post",
                "SELECT DISTINCT post_id FROM crossings_by_post_hour "
                "WHERE post_country IN (${country:singlequote}) ORDER BY post_id")
ONE_POST = Variable("post", "Border post",  # busiest first, so the default (first) post has data
                    "SELECT post_id FROM crossings_by_post_hour GROUP BY post_id "
                    "ORDER BY uniqExactMerge(events) DESC, post_id", multi=False, include_all=False, sort=0)
RULE = Variable("rule", "Rule", "SELECT DISTINCT rule_id FROM alerts ORDER BY rule_id")

OTHER = f"other (each < {K})"


def _label() -> str:
    """A bar's ``label``, or OTHER for a cell below k: small cells are pooled, and the pool shown only from k up."""
    return f"if(n >= {K}, label, '{OTHER}')"


REGIONAL_FLOWS = Dashboard(
    uid="lintas-regional-flows",
    title="Lintas · Regional flows",
    description=f"Entries, exits, corridors, nationality mix and refusals; counts below {K} are suppressed.",
    audience="regional",
    variables=(COUNTRY, POST),
    panels=(
        Panel("Crossings in the period", "stat", width=6, counts=("crossings",), sql=f"""
SELECT if(n >= {K}, n, NULL) AS crossings FROM (
  SELECT uniqExactMerge(events) AS n FROM crossings_by_post_hour
  WHERE $__timeFilter(hour) AND post_country IN (${{country:singlequote}}) AND post_id IN (${{post:singlequote}}))
""", columns=("crossings",)),
        Panel("Entries and exits", "timeseries", width=18, counts=("crossings",), sql=f"""
SELECT time, series, if(n >= {K}, n, NULL) AS crossings FROM (
  SELECT $__timeInterval(hour) AS time, direction AS series, uniqExactMerge(events) AS n
  FROM crossings_by_post_hour
  WHERE $__timeFilter(hour) AND post_country IN (${{country:singlequote}}) AND post_id IN (${{post:singlequote}})
  GROUP BY time, series)
ORDER BY time, series
""", columns=("time", "series", "crossings")),
        Panel("Corridors (origin → destination)", "barchart", counts=("crossings",), sql=f"""
SELECT {_label()} AS corridor, sum(n) AS crossings FROM (
  SELECT concat(origin_country, ' → ', destination_country) AS label, uniqExactMerge(events) AS n
  FROM corridor_flows_daily WHERE $__dateFilter(day) AND post_country IN (${{country:singlequote}})
  GROUP BY label)
GROUP BY corridor HAVING crossings >= {K} ORDER BY crossings DESC, corridor LIMIT 15
""", columns=("corridor", "crossings")),
        Panel("Nationality mix", "barchart", counts=("crossings",), sql=f"""
SELECT {_label()} AS nationality, sum(n) AS crossings FROM (
  SELECT nationality AS label, uniqExactMerge(events) AS n FROM nationality_mix_daily
  WHERE $__dateFilter(day) AND post_id IN (${{post:singlequote}}) GROUP BY label)
GROUP BY nationality HAVING crossings >= {K} ORDER BY crossings DESC, nationality LIMIT 15
""", columns=("nationality", "crossings")),
        Panel("Refusals by reason", "barchart", counts=("refusals",), sql=f"""
SELECT {_label()} AS reason, sum(n) AS refusals FROM (
  SELECT refusal_reason AS label, uniqExactMerge(events) AS n FROM refusals_daily
  WHERE $__dateFilter(day) AND post_id IN (${{post:singlequote}}) GROUP BY label)
GROUP BY reason HAVING refusals >= {K} ORDER BY refusals DESC, reason
""", columns=("reason", "refusals")),
        Panel("Refusals per day", "timeseries", counts=("refusals",), sql=f"""
SELECT time, if(n >= {K}, n, NULL) AS refusals FROM (
  SELECT toDateTime(day) AS time, uniqExactMerge(events) AS n FROM refusals_daily
  WHERE $__dateFilter(day) AND post_id IN (${{post:singlequote}}) GROUP BY time)
ORDER BY time
""", columns=("time", "refusals")),
    ),
)

BORDER_POST = Dashboard(
    uid="lintas-border-post",
    title="Lintas · Border post",
    description="One post in detail, for the operating state's officers and analysts.",
    audience="operating_state",
    variables=(ONE_POST,),
    panels=(
        Panel("Crossings per hour", "timeseries", width=16, sql="""
SELECT $__timeInterval(hour) AS time, direction AS series, uniqExactMerge(events) AS crossings
FROM crossings_by_post_hour WHERE $__timeFilter(hour) AND post_id IN (${post:singlequote})
GROUP BY time, series ORDER BY time, series
""", columns=("time", "series", "crossings")),
        Panel("Minors and refusals", "stat", width=8, sql="""
SELECT uniqExactIf(event_id, is_minor = 1) AS minors, uniqExactIf(event_id, refused = 1) AS refusals
FROM crossings WHERE $__timeFilter(occurred_at) AND post_id IN (${post:singlequote})
""", columns=("minors", "refusals")),
        Panel("Travel purpose", "barchart", width=8, sql="""
SELECT travel_purpose AS purpose, uniqExact(event_id) AS crossings FROM crossings
WHERE $__timeFilter(occurred_at) AND post_id IN (${post:singlequote})
GROUP BY purpose ORDER BY crossings DESC, purpose
""", columns=("purpose", "crossings")),
        Panel("Documents", "barchart", width=8, sql="""
SELECT concat(document_type, if(document_expired = 1, ' (expired)', '')) AS document,
       uniqExact(event_id) AS crossings
FROM crossings WHERE $__timeFilter(occurred_at) AND post_id IN (${post:singlequote})
GROUP BY document ORDER BY crossings DESC, document
""", columns=("document", "crossings")),
        Panel("Carriers", "barchart", width=8, sql="""
SELECT concat(carrier_mode, ' ', carrier_id) AS carrier, uniqExact(event_id) AS crossings FROM crossings
WHERE $__timeFilter(occurred_at) AND post_id IN (${post:singlequote})
GROUP BY carrier ORDER BY crossings DESC, carrier LIMIT 10
""", columns=("carrier", "crossings")),
    ),
)

TRAFFICKING_ALERTS = Dashboard(
    uid="lintas-trafficking-alerts",
    title="Lintas · Trafficking alerts",
    description="Possible trafficking patterns for human review: nothing here is a decision.",
    audience="operating_state",
    variables=(RULE,),
    panels=(
        Panel("Alerts by rule", "timeseries", width=24, sql="""
SELECT $__timeInterval(detected_at) AS time, rule_id AS series, count() AS alerts
FROM alerts FINAL WHERE status = 'ACTIVE' AND $__timeFilter(detected_at) AND rule_id IN (${rule:singlequote})
GROUP BY time, series ORDER BY time, series
""", columns=("time", "series", "alerts")),
        Panel("By severity", "barchart", width=8, sql="""
SELECT severity, count() AS alerts FROM alerts FINAL
WHERE status = 'ACTIVE' AND $__timeFilter(detected_at) AND rule_id IN (${rule:singlequote})
GROUP BY severity ORDER BY alerts DESC, severity
""", columns=("severity", "alerts")),
        Panel("By post", "barchart", width=8, sql="""
SELECT post, count() AS alerts FROM (
  SELECT arrayJoin(post_ids) AS post FROM alerts FINAL
  WHERE status = 'ACTIVE' AND $__timeFilter(detected_at) AND rule_id IN (${rule:singlequote}))
GROUP BY post ORDER BY alerts DESC, post LIMIT 15
""", columns=("post", "alerts")),
        Panel("By corridor of the evidence", "barchart", width=8, sql="""
SELECT concat(c.origin_country, ' → ', c.destination_country) AS corridor, uniqExact(a.alert_id) AS alerts
FROM (
  SELECT alert_id, toUUIDOrZero(arrayJoin(evidence_event_ids)) AS event_id FROM alerts FINAL
  WHERE status = 'ACTIVE' AND $__timeFilter(detected_at) AND rule_id IN (${rule:singlequote})) AS a
INNER JOIN (SELECT DISTINCT event_id, origin_country, destination_country FROM crossings) AS c
  ON c.event_id = a.event_id
GROUP BY corridor ORDER BY alerts DESC, corridor LIMIT 15
""", columns=("corridor", "alerts")),
        Panel("Triage: newest first", "table", width=24, height=10, sql="""
SELECT alert_id, rule_id, severity, key_kind, substring(key_token, 1, 12) AS key,
       evidence_count, length(subjects) AS subjects, arrayStringConcat(post_ids, ', ') AS posts,
       last_seen
FROM alerts FINAL WHERE status = 'ACTIVE' AND $__timeFilter(detected_at) AND rule_id IN (${rule:singlequote})
ORDER BY last_seen DESC, alert_id LIMIT 200
""", columns=("alert_id", "rule_id", "severity", "key_kind", "key", "evidence_count", "subjects", "posts",
              "last_seen")),
        Panel("Cases by status (officers' review)", "barchart", width=8, sql="""
SELECT status, count() AS cases FROM cases FINAL WHERE $__timeFilter(updated_at)
GROUP BY status ORDER BY cases DESC, status
""", columns=("status", "cases")),
        Panel("Precision per rule, from officers' decisions", "table", width=8, sql="""
SELECT rule_id, decided, upheld, dismissed, round(precision, 3) AS precision
FROM rule_precision WHERE rule_id IN (${rule:singlequote}) ORDER BY decided DESC, rule_id
""", columns=("rule_id", "decided", "upheld", "dismissed", "precision")),
        Panel("Precision per indicator, from officers' decisions", "table", width=8, sql="""
SELECT indicator, decided, upheld, dismissed, round(precision, 3) AS precision
FROM indicator_precision ORDER BY decided DESC, indicator
""", columns=("indicator", "decided", "upheld", "dismissed", "precision")),
        Panel("Review queue: open cases, the most severe and oldest first", "table", width=24, height=10, sql="""
SELECT case_id, status, severity, score, arrayStringConcat(rules, ', ') AS rules,
       arrayStringConcat(post_ids, ', ') AS posts, opened_at,
       dateDiff('hour', opened_at, now64(3)) AS waiting_hours
FROM cases FINAL WHERE status IN ('OPEN', 'IN_REVIEW') AND $__timeFilter(updated_at)
ORDER BY multiIf(severity = 'HIGH', 0, severity = 'MEDIUM', 1, 2), opened_at, case_id LIMIT 200
""", columns=("case_id", "status", "severity", "score", "rules", "posts", "opened_at", "waiting_hours")),
    ),
)

DEDUPLICATION = Dashboard(
    uid="lintas-biometric-dedup",
    title="Lintas · Biometric deduplication",
    description="1:1 verifications by outcome, multiple-identity links and their review, and accuracy against the "
                "calibrated operating point.",
    audience="operating_state",
    panels=(
        Panel("Verifications by outcome", "timeseries", width=16, sql="""
SELECT $__timeInterval(decided_at) AS time, outcome AS series, count() AS captures
FROM dedup_decisions FINAL WHERE $__timeFilter(decided_at)
GROUP BY time, series ORDER BY time, series
""", columns=("time", "series", "captures")),
        Panel("Review backlog", "stat", width=8, sql="""
SELECT countIf(status = 'OPEN' AND colour = 'RED') AS open_red,
       countIf(status = 'OPEN' AND colour = 'YELLOW') AS open_yellow
FROM dedup_links FINAL WHERE $__timeFilter(raised_at)
""", columns=("open_red", "open_yellow")),
        Panel("Links by colour and outcome", "barchart", width=8, sql="""
SELECT concat(colour, ' · ', status) AS link, count() AS links FROM dedup_links FINAL
WHERE $__timeFilter(raised_at) GROUP BY link ORDER BY links DESC, link
""", columns=("link", "links")),
        Panel("Links raised", "timeseries", width=16, sql="""
SELECT $__timeInterval(raised_at) AS time, colour AS series, count() AS links
FROM dedup_links FINAL WHERE $__timeFilter(raised_at) AND status != 'WITHDRAWN'
GROUP BY time, series ORDER BY time, series
""", columns=("time", "series", "links")),
        Panel("Accuracy against the calibrated point (estimated from the stream)", "table", width=24, sql="""
SELECT model, thresholds_version, sum(d.returns) AS good_returns,
       round(sum(d.fnir_estimate * d.returns) / greatest(sum(d.returns), 1), 4) AS fnir_estimated,
       round(any(d.fnir_calibrated), 4) AS fnir_at_calibration,
       sum(d.subjects) AS new_subjects,
       round(sum(d.fpir_estimate * d.subjects) / greatest(sum(d.subjects), 1), 4) AS fpir_estimated,
       any(d.fpir_target) AS fpir_target_,
       multiIf(thresholds_version = '', 'uncalibrated',
               good_returns >= 200 AND fnir_estimated > greatest(2 * fnir_at_calibration, fnir_at_calibration + 0.02)
               OR new_subjects >= 500 AND fpir_estimated > 2 * fpir_target_, 'DRIFT', 'ok') AS state
FROM dedup_accuracy_daily AS d WHERE $__dateFilter(day)
GROUP BY model, thresholds_version ORDER BY model
""", columns=("model", "thresholds_version", "good_returns", "fnir_estimated", "fnir_at_calibration",
              "new_subjects", "fpir_estimated", "fpir_target_", "state")),
        Panel("Estimated FNIR by post", "barchart", width=12, sql="""
SELECT post_id, round(sum(d.fnir_estimate * d.returns) / greatest(sum(d.returns), 1), 4) AS fnir_estimated
FROM dedup_accuracy_daily AS d WHERE $__dateFilter(day)
GROUP BY post_id ORDER BY fnir_estimated DESC, post_id LIMIT 15
""", columns=("post_id", "fnir_estimated")),
        Panel("Estimated FPIR by post", "barchart", width=12, sql="""
SELECT post_id, round(sum(d.fpir_estimate * d.subjects) / greatest(sum(d.subjects), 1), 4) AS fpir_estimated
FROM dedup_accuracy_daily AS d WHERE $__dateFilter(day) AND d.subjects > 0
GROUP BY post_id ORDER BY fpir_estimated DESC, post_id LIMIT 15
""", columns=("post_id", "fpir_estimated")),
        Panel("Oldest open links", "table", width=24, sql="""
SELECT link_id, colour, round(score, 3) AS score, pair_count AS pairs, post_id, source, raised_at,
       dateDiff('hour', raised_at, now64(3)) AS waiting_hours
FROM dedup_links FINAL WHERE status = 'OPEN' AND $__timeFilter(raised_at)
ORDER BY raised_at, link_id LIMIT 100
""", columns=("link_id", "colour", "score", "pairs", "post_id", "source", "raised_at", "waiting_hours")),
    ),
)

PIPELINE_HEALTH = Dashboard(
    uid="lintas-pipeline-health",
    title="Lintas · Pipeline health",
    description="Throughput, dead letters, end-to-end lag, sink latency and each agent's consumer lag, for operations.",
    audience="operating_state",
    time_from="now-6h",
    panels=(
        Panel("Rows written per interval", "timeseries", sql="""
SELECT $__timeInterval(ingested_at) AS time, count() AS rows FROM crossings
WHERE $__timeFilter(ingested_at) GROUP BY time ORDER BY time
""", columns=("time", "rows")),
        Panel("Dead-letter rate", "stat", width=6, unit="percent", sql="""
SELECT round(100 * d / greatest(d + e, 1), 3) AS dead_letter_percent FROM
  (SELECT count() AS d FROM dead_letters FINAL WHERE $__timeFilter(ingested_at)) AS letters,
  (SELECT uniqExact(event_id) AS e FROM crossings WHERE $__timeFilter(ingested_at)) AS rows
""", columns=("dead_letter_percent",)),
        Panel("Dead letters by reason", "barchart", width=6, sql="""
SELECT concat(error_code, if(error_field = '', '', concat(' · ', error_field))) AS reason, count() AS letters
FROM dead_letters FINAL WHERE $__timeFilter(ingested_at)
GROUP BY reason ORDER BY letters DESC, reason LIMIT 15
""", columns=("reason", "letters")),
        Panel("End-to-end lag: produced → in ClickHouse", "timeseries", unit="s", sql="""
SELECT $__timeInterval(ingested_at) AS time,
       quantile(0.5)(dateDiff('millisecond', produced_at, ingested_at)) / 1000 AS p50_s,
       quantile(0.95)(dateDiff('millisecond', produced_at, ingested_at)) / 1000 AS p95_s
FROM crossings WHERE $__timeFilter(ingested_at) GROUP BY time ORDER BY time
""", columns=("time", "p50_s", "p95_s")),
        Panel("Sink latency: batch stamped → batch recorded", "timeseries", unit="s", sql="""
SELECT $__timeInterval(b.ingested_at) AS time,
       quantile(0.5)(dateDiff('millisecond', b.ingested_at, p.processed_at)) / 1000 AS p50_s,
       max(dateDiff('millisecond', b.ingested_at, p.processed_at)) / 1000 AS max_s
FROM (SELECT DISTINCT 1 AS k, ingested_at FROM crossings WHERE $__timeFilter(ingested_at)) AS b
ASOF INNER JOIN (
  SELECT 1 AS k, processed_at FROM processing_log
  WHERE component = 'ingest_crossings' AND activity = 'store' AND purpose = 'analytics'
    AND $__timeFilter(processed_at)) AS p
  ON b.k = p.k AND p.processed_at >= b.ingested_at
GROUP BY time ORDER BY time
""", columns=("time", "p50_s", "max_s")),
        Panel("Consumer lag per agent (records behind)", "timeseries", width=16,
              description="Each batch agent's records read by none of its members yet, summed over its partitions "
                          "(the latest report of each partition in the interval). A line that only grows: the "
                          "agent cannot keep up; add worker processes (lintas worker --processes) or machines.",
              sql="""
SELECT time, agent AS series, sum(behind) AS records_behind FROM (
  SELECT $__timeInterval(measured_at) AS time, agent, topic, partition, argMax(lag, measured_at) AS behind
  FROM consumer_lag WHERE $__timeFilter(measured_at)
  GROUP BY time, agent, topic, partition)
GROUP BY time, series ORDER BY time, series
""", columns=("time", "series", "records_behind")),
        Panel("Lag now, per agent", "barchart", width=8,
              description="Each partition's latest report in the period, summed per agent.", sql="""
SELECT agent, sum(behind) AS records_behind FROM (
  SELECT agent, topic, partition, argMax(lag, measured_at) AS behind
  FROM consumer_lag WHERE $__timeFilter(measured_at) GROUP BY agent, topic, partition)
GROUP BY agent ORDER BY records_behind DESC, agent
""", columns=("agent", "records_behind")),
    ),
)

DASHBOARDS = (REGIONAL_FLOWS, BORDER_POST, TRAFFICKING_ALERTS, DEDUPLICATION, PIPELINE_HEALTH)
