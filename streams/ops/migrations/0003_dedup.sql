-- Biometric deduplication: decisions and multiple-identity links. Pseudonymous ids,
-- tokens and scores only: no template, name or document number ever reaches ClickHouse.

-- One row per capture (probe): what the 1:N search decided, with the best candidates,
-- the score and the threshold version. A replayed probe replaces its first row.
CREATE TABLE IF NOT EXISTS dedup_decisions
(
    probe_id String,
    event_id UUID,
    source LowCardinality(String),
    post_id LowCardinality(String),
    occurred_at DateTime64(3, 'UTC'),
    outcome LowCardinality(String),
    subject_id String,
    identity_token String,
    score Float32,
    thresholds_version LowCardinality(String),
    index_kind LowCardinality(String),
    candidate_subjects Array(String),
    candidate_scores Array(Float32),
    decided_at DateTime64(3, 'UTC'),
    key_id LowCardinality(String)
)
ENGINE = ReplacingMergeTree(decided_at)
ORDER BY probe_id;

-- One row per link state. version = status rank * 1e13 + update time in ms, so an
-- officer's decision always wins over a replayed OPEN copy of the same link.
CREATE TABLE IF NOT EXISTS dedup_links
(
    link_id String,
    subject_id String,
    identity_token String,
    probe_id String,
    event_id UUID,
    source LowCardinality(String),
    post_id LowCardinality(String),
    colour LowCardinality(String),
    score Float32,
    thresholds_version LowCardinality(String),
    status LowCardinality(String),
    officer_token String,
    raised_at DateTime64(3, 'UTC'),
    updated_at DateTime64(3, 'UTC'),
    key_id LowCardinality(String),
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY link_id;
