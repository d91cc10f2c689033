-- Officers' review. Rules raise indicators (the alerts table); a case per person, escort, sponsor,
-- subject or vessel collects its key's indicators and opens when their combined evidence passes the
-- review policy's threshold (agents/cases.py). Cases change only through the case agent: new evidence,
-- and officers' decisions from review.decisions. The highest version of a case wins, so a replayed
-- decision or indicator never undoes a later one. Pseudonymous: tokens, codes, counts and event ids.
CREATE TABLE IF NOT EXISTS cases
(
    case_id String,
    key_kind LowCardinality(String),
    key_token String,
    status LowCardinality(String),
    severity LowCardinality(String),
    score Float64,
    threshold Float64,
    policy_version LowCardinality(String),
    indicator_ids Array(String),
    rules Array(LowCardinality(String)),
    families Array(LowCardinality(String)),
    post_ids Array(LowCardinality(String)),
    subjects Array(String),
    evidence_event_ids Array(String),
    summary String,
    first_seen DateTime64(3, 'UTC'),
    last_seen DateTime64(3, 'UTC'),
    opened_at DateTime64(3, 'UTC'),
    reviewer_token String,
    reason_code LowCardinality(String),
    pathways Array(LowCardinality(String)),
    decided_at Nullable(DateTime64(3, 'UTC')),
    reopened UInt16,
    decisions UInt16,
    key_id LowCardinality(String),
    version UInt64,
    updated_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(version)
ORDER BY case_id
TTL toDateTime(last_seen) + INTERVAL 5 YEAR;

-- Every decision applied (or refused) by the case agent, with the case as the officer decided it:
-- what the precision per rule and per indicator is learned from. One row per decision id.
CREATE TABLE IF NOT EXISTS case_decisions
(
    decision_id String,
    case_id String,
    action LowCardinality(String),
    status_before LowCardinality(String),
    status_after LowCardinality(String),
    reason_code LowCardinality(String),
    pathway LowCardinality(String),
    officer_token String,
    officer_role LowCardinality(String),
    post_id LowCardinality(String),
    rules Array(LowCardinality(String)),
    indicator_ids Array(String),
    severity LowCardinality(String),
    score Float64,
    decided_at DateTime64(3, 'UTC'),
    applied_at DateTime64(3, 'UTC'),
    key_id LowCardinality(String)
)
ENGINE = ReplacingMergeTree
ORDER BY decision_id
TTL toDateTime(decided_at) + INTERVAL 5 YEAR;

-- Precision as officers see it: of the cases an officer closed (confirmed, referred or dismissed) that
-- carried a rule, the share not dismissed. A case's last terminal decision counts.
CREATE VIEW IF NOT EXISTS rule_precision AS
SELECT rule_id,
       count() AS decided,
       countIf(outcome != 'DISMISSED') AS upheld,
       countIf(outcome = 'DISMISSED') AS dismissed,
       upheld / decided AS precision
FROM
(
    SELECT case_id, argMax(status_after, (decided_at, decision_id)) AS outcome,
           argMax(rules, (decided_at, decision_id)) AS case_rules
    FROM case_decisions
    WHERE status_after IN ('CONFIRMED', 'DISMISSED', 'REFERRED')
    GROUP BY case_id
)
ARRAY JOIN case_rules AS rule_id
GROUP BY rule_id;

-- The same per indicator code (UNODC, ILO, IOM, Bali Process codes of the rules file): a case's indicators
-- as the officer decided it, each code once per case.
CREATE VIEW IF NOT EXISTS indicator_precision AS
SELECT indicator,
       count() AS decided,
       countIf(outcome != 'DISMISSED') AS upheld,
       countIf(outcome = 'DISMISSED') AS dismissed,
       upheld / decided AS precision
FROM
(
    SELECT DISTINCT d.case_id AS case_id, d.outcome AS outcome, arrayJoin(a.indicators) AS indicator
    FROM
    (
        SELECT case_id, outcome, arrayJoin(ids) AS alert_id
        FROM
        (
            SELECT case_id, argMax(status_after, (decided_at, decision_id)) AS outcome,
                   argMax(indicator_ids, (decided_at, decision_id)) AS ids
            FROM case_decisions
            WHERE status_after IN ('CONFIRMED', 'DISMISSED', 'REFERRED')
            GROUP BY case_id
        )
    ) AS d
    INNER JOIN (SELECT alert_id, indicators FROM alerts FINAL) AS a ON a.alert_id = d.alert_id
)
GROUP BY indicator;
