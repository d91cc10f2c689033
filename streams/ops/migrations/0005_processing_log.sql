-- Record of processing (UU PDP 27/2022): one row per batch a component handled; counts,
-- codes and Kafka coordinates only. Append-only: plain MergeTree, never updated; the pipeline's
-- user inserts, no role deletes (retention by TTL from the privacy policy).
CREATE TABLE IF NOT EXISTS processing_log
(
    record_id UUID,
    processed_at DateTime64(3, 'UTC'),
    component LowCardinality(String),
    activity LowCardinality(String),
    purpose LowCardinality(String),
    data_classes Array(LowCardinality(String)),
    records UInt32,
    source String,
    destination String,
    key_id LowCardinality(String),
    outcome LowCardinality(String),
    detail String,
    policy_version LowCardinality(String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(processed_at)
ORDER BY (component, processed_at)
TTL toDateTime(processed_at) + INTERVAL 3650 DAY;
