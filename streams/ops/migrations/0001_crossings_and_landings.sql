-- Pseudonymised crossings and landings: no document number, name, date of birth or template.
-- ReplacingMergeTree on the event id: a replayed Kafka message replaces its first copy.
CREATE TABLE IF NOT EXISTS crossings
(
    event_id UUID,
    occurred_at DateTime64(3, 'UTC'),
    post_id LowCardinality(String),
    post_type LowCardinality(String),
    post_country LowCardinality(String),
    direction LowCardinality(String),
    document_token String,
    document_type LowCardinality(String),
    issuing_state LowCardinality(String),
    document_expired UInt8,
    name_token String,
    age_band LowCardinality(String),
    is_minor UInt8,
    sex LowCardinality(String),
    nationality LowCardinality(String),
    travel_purpose LowCardinality(String),
    visa_type LowCardinality(String),
    has_placement UInt8,
    placement_token String,
    sponsor_kind LowCardinality(String),
    sponsor_token String,
    sponsor_registered UInt8,
    companion_count UInt8,
    escort_tokens Array(String),
    companion_relationships Array(LowCardinality(String)),
    carrier_mode LowCardinality(String),
    carrier_id LowCardinality(String),
    origin_country LowCardinality(String),
    destination_country LowCardinality(String),
    refused UInt8,
    refusal_reason LowCardinality(String),
    officer_token String,
    has_biometric UInt8,
    biometric_quality Float32,
    key_id LowCardinality(String),
    source_partition UInt16,
    source_offset UInt64,
    produced_at DateTime64(3, 'UTC'),
    ingested_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (post_id, occurred_at, event_id)
TTL toDateTime(occurred_at) + INTERVAL 5 YEAR;

CREATE TABLE IF NOT EXISTS landings
(
    landing_id UUID,
    occurred_at DateTime64(3, 'UTC'),
    site_id LowCardinality(String),
    site_name LowCardinality(String),
    province LowCardinality(String),
    country LowCardinality(String),
    latitude Float64,
    longitude Float64,
    vessel_token String,
    vessel_type LowCardinality(String),
    flag_state LowCardinality(String),
    landing_kind LowCardinality(String),
    adults UInt32,
    minors UInt32,
    unaccompanied_minors UInt32,
    nationalities Array(LowCardinality(String)),
    persons_registered UInt32,
    key_id LowCardinality(String),
    source_partition UInt16,
    source_offset UInt64,
    produced_at DateTime64(3, 'UTC'),
    ingested_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (site_id, occurred_at, landing_id)
TTL toDateTime(occurred_at) + INTERVAL 5 YEAR;

-- Dead letters: the reason and where the message sits in Kafka; never its bytes (they may hold personal data).
CREATE TABLE IF NOT EXISTS dead_letters
(
    source_topic LowCardinality(String),
    source_partition UInt16,
    source_offset UInt64,
    error_code LowCardinality(String),
    error_field String,
    reason String,
    produced_at DateTime64(3, 'UTC'),
    ingested_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(ingested_at)
ORDER BY (source_topic, source_partition, source_offset)
TTL toDateTime(ingested_at) + INTERVAL 90 DAY;
