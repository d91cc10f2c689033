-- Backpressure you can see: each batch agent's consumer lag per partition, every few seconds
-- (LINTAS_WORKER_LAG_SECONDS), from the worker's own consumer (position and the partition's end,
-- as of its last fetch). Offsets and names only. The Pipeline health dashboard shows it.
CREATE TABLE IF NOT EXISTS consumer_lag
(
    agent LowCardinality(String),
    topic LowCardinality(String),
    partition UInt16,
    member LowCardinality(String),
    position Int64,
    end_offset Int64,
    lag Int64,
    measured_at DateTime64(3, 'UTC')
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(measured_at)
ORDER BY (agent, topic, partition, measured_at)
TTL toDateTime(measured_at) + INTERVAL 90 DAY;
