-- Regional aggregates. Each counts distinct event ids (uniqExact states), so a replayed
-- message never counts twice even though materialised views see every insert.
CREATE TABLE IF NOT EXISTS crossings_by_post_hour
(
    hour DateTime('UTC'),
    post_id LowCardinality(String),
    post_country LowCardinality(String),
    direction LowCardinality(String),
    events AggregateFunction(uniqExact, UUID)
)
ENGINE = AggregatingMergeTree
ORDER BY (post_country, post_id, direction, hour)
TTL hour + INTERVAL 10 YEAR;

CREATE MATERIALIZED VIEW IF NOT EXISTS crossings_by_post_hour_mv TO crossings_by_post_hour AS
SELECT toStartOfHour(occurred_at) AS hour, post_id, post_country, direction, uniqExactState(event_id) AS events
FROM crossings GROUP BY hour, post_id, post_country, direction;

CREATE TABLE IF NOT EXISTS corridor_flows_daily
(
    day Date,
    origin_country LowCardinality(String),
    destination_country LowCardinality(String),
    post_country LowCardinality(String),
    direction LowCardinality(String),
    events AggregateFunction(uniqExact, UUID)
)
ENGINE = AggregatingMergeTree
ORDER BY (origin_country, destination_country, post_country, direction, day)
TTL day + INTERVAL 10 YEAR;

CREATE MATERIALIZED VIEW IF NOT EXISTS corridor_flows_daily_mv TO corridor_flows_daily AS
SELECT toDate(occurred_at) AS day, origin_country, destination_country, post_country, direction,
       uniqExactState(event_id) AS events
FROM crossings GROUP BY day, origin_country, destination_country, post_country, direction;

CREATE TABLE IF NOT EXISTS nationality_mix_daily
(
    day Date,
    post_id LowCardinality(String),
    nationality LowCardinality(String),
    direction LowCardinality(String),
    events AggregateFunction(uniqExact, UUID)
)
ENGINE = AggregatingMergeTree
ORDER BY (post_id, nationality, direction, day)
TTL day + INTERVAL 10 YEAR;

CREATE MATERIALIZED VIEW IF NOT EXISTS nationality_mix_daily_mv TO nationality_mix_daily AS
SELECT toDate(occurred_at) AS day, post_id, nationality, direction, uniqExactState(event_id) AS events
FROM crossings GROUP BY day, post_id, nationality, direction;

CREATE TABLE IF NOT EXISTS refusals_daily
(
    day Date,
    post_id LowCardinality(String),
    refusal_reason LowCardinality(String),
    nationality LowCardinality(String),
    events AggregateFunction(uniqExact, UUID)
)
ENGINE = AggregatingMergeTree
ORDER BY (post_id, refusal_reason, nationality, day)
TTL day + INTERVAL 10 YEAR;

CREATE MATERIALIZED VIEW IF NOT EXISTS refusals_daily_mv TO refusals_daily AS
SELECT toDate(occurred_at) AS day, post_id, refusal_reason, nationality, uniqExactState(event_id) AS events
FROM crossings WHERE refused = 1 GROUP BY day, post_id, refusal_reason, nationality;
