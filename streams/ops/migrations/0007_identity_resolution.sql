-- Identity resolution: a capture is verified 1:1 against the subjects of the identity it presented, and
-- that decision is revised when captures of the identity arrive out of order; the highest revision of a
-- capture wins. Links join two subjects of two identities. Searches and calibrations feed the accuracy
-- monitor. Pseudonymous ids, tokens and scores only.

CREATE TABLE IF NOT EXISTS dedup_decisions_by_revision
(
    probe_id String,
    event_id UUID,
    source LowCardinality(String),
    post_id LowCardinality(String),
    occurred_at DateTime64(3, 'UTC'),
    outcome LowCardinality(String),
    subject_id String,
    identity_token String,
    identity_kind LowCardinality(String),
    model LowCardinality(String),
    score Float32,
    quality Float32,
    thresholds_version LowCardinality(String),
    index_kind LowCardinality(String),
    candidate_subjects Array(String),
    candidate_scores Array(Float32),
    revision UInt64,
    decided_at DateTime64(3, 'UTC'),
    key_id LowCardinality(String)
)
ENGINE = ReplacingMergeTree(revision)
ORDER BY probe_id;

INSERT INTO dedup_decisions_by_revision
SELECT probe_id, event_id, source, post_id, occurred_at, outcome, subject_id, identity_token, 'document',
       'unspecified', score, 0, thresholds_version, index_kind, candidate_subjects, candidate_scores, 0,
       decided_at, key_id
FROM dedup_decisions;

DROP TABLE dedup_decisions;

RENAME TABLE dedup_decisions_by_revision TO dedup_decisions;

-- A link joins subject_id (identity subject_identity_token) and linked_subject_id (identity identity_token).
ALTER TABLE dedup_links
    ADD COLUMN IF NOT EXISTS linked_subject_id String DEFAULT '',
    ADD COLUMN IF NOT EXISTS subject_identity_token String DEFAULT '',
    ADD COLUMN IF NOT EXISTS model LowCardinality(String) DEFAULT '',
    ADD COLUMN IF NOT EXISTS pair_count UInt32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS decided_by LowCardinality(String) DEFAULT '';

-- One row per 1:N search of a sample in one shard: the best score against another identity there
-- (the sample's best over the gallery is the maximum over shards). For the accuracy monitor only.
CREATE TABLE IF NOT EXISTS dedup_searches
(
    subject_id String,
    probe_id String,
    model LowCardinality(String),
    post_id LowCardinality(String),
    occurred_at DateTime64(3, 'UTC'),
    quality Float32,
    shard UInt8,
    index_kind LowCardinality(String),
    best_score Float32,
    searched_at DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY (model, occurred_at, probe_id);

-- Every calibration `lintas dedup calibrate` wrote: the thresholds of a model and the rates expected at them.
CREATE TABLE IF NOT EXISTS dedup_calibrations
(
    version String,
    model LowCardinality(String),
    verify Float32,
    mismatch Float32,
    yellow Float32,
    red Float32,
    pair_floor Float32,
    good_quality Float32,
    fpir_target Float64,
    fnir_estimate Float64,
    genuine_median Float32,
    gallery_size UInt64,
    calibrated_at DateTime64(3, 'UTC'),
    body String
)
ENGINE = ReplacingMergeTree(calibrated_at)
ORDER BY (model, version);

-- The stream's own accuracy per model, post and day, beside the calibrated point:
-- estimated FNIR = share of good-quality returns (a document's later captures) scoring below yellow;
-- estimated FPIR = share of subjects first seen that day whose best sample scored yellow or more against
-- another identity (an upper bound: the same person under two identities counts too).
-- A model never calibrated has no thresholds_version and no estimates (NULL).
CREATE VIEW IF NOT EXISTS dedup_accuracy_daily AS
WITH latest AS (
    SELECT model, argMax(version, calibrated_at) AS version, argMax(yellow, calibrated_at) AS yellow,
           argMax(good_quality, calibrated_at) AS good_quality, argMax(fnir_estimate, calibrated_at) AS fnir_calibrated,
           argMax(fpir_target, calibrated_at) AS fpir_target,
           argMax(genuine_median, calibrated_at) AS genuine_median_calibrated
    FROM dedup_calibrations GROUP BY model
)
SELECT d.model AS model, d.post_id AS post_id, d.day AS day, d.returns AS returns,
       d.genuine_median AS genuine_median, if(l.version = '', NULL, d.fnir_estimate) AS fnir_estimate,
       s.subjects AS subjects, if(l.version = '', NULL, s.fpir_estimate) AS fpir_estimate,
       l.version AS thresholds_version, if(l.version = '', NULL, l.fnir_calibrated) AS fnir_calibrated,
       if(l.version = '', NULL, l.fpir_target) AS fpir_target,
       if(l.version = '', NULL, l.genuine_median_calibrated) AS genuine_median_calibrated
FROM (
    SELECT r.model AS model, r.post_id AS post_id, toDate(r.occurred_at) AS day, count() AS returns,
           toFloat64(median(r.score)) AS genuine_median, avg(r.score < l.yellow) AS fnir_estimate
    FROM (SELECT model, post_id, occurred_at, score, quality FROM dedup_decisions FINAL
          WHERE outcome IN ('known_traveller', 'inconclusive')) AS r
    LEFT JOIN latest AS l ON r.model = l.model
    WHERE r.quality >= l.good_quality
    GROUP BY model, post_id, day
) AS d
LEFT JOIN (
    SELECT b.model AS model, b.post_id AS post_id, toDate(b.first_seen) AS day, count() AS subjects,
           avg(b.best >= l.yellow) AS fpir_estimate
    FROM (SELECT model, subject_id, argMin(post_id, occurred_at) AS post_id, min(occurred_at) AS first_seen,
                 max(best_score) AS best
          FROM dedup_searches GROUP BY model, subject_id) AS b
    LEFT JOIN latest AS l ON b.model = l.model
    GROUP BY model, post_id, day
) AS s ON d.model = s.model AND d.post_id = s.post_id AND d.day = s.day
LEFT JOIN latest AS l ON d.model = l.model;

-- An alert the dedup decisions behind it no longer support (they were revised) is WITHDRAWN, not deleted.
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS status LowCardinality(String) DEFAULT 'ACTIVE';
