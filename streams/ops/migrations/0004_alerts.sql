-- Alerts for officers' review: trafficking pattern rules now, watchlist checks later (family).
-- One row per alert state; a grown alert (more evidence, or a higher severity) has a higher
-- version and replaces the earlier copy, so every pattern instance is one alert.
-- Pseudonymous: tokens, codes, counts and event ids only.
CREATE TABLE IF NOT EXISTS alerts
(
    alert_id String,
    family LowCardinality(String),
    rule_id LowCardinality(String),
    rule_version UInt16,
    rules_version LowCardinality(String),
    indicators Array(LowCardinality(String)),
    severity LowCardinality(String),
    key_kind LowCardinality(String),
    key_token String,
    subjects Array(String),
    evidence_event_ids Array(String),
    evidence_count UInt32,
    post_ids Array(LowCardinality(String)),
    explanation String,
    features Map(String, Float64),
    first_seen DateTime64(3, 'UTC'),
    last_seen DateTime64(3, 'UTC'),
    key_id LowCardinality(String),
    version UInt64,
    detected_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(version)
ORDER BY alert_id
TTL toDateTime(last_seen) + INTERVAL 5 YEAR;
