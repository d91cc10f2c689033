-- Stays (agents/overstay.py): each traveller's entries and exits paired, per country of entry.
-- One row per stay state; a closed stay (version 2) replaces its open row (version 1).
-- Operations tokens (officers' follow-up, like alerts); the regional view below has none.
CREATE TABLE IF NOT EXISTS stays
(
    stay_id String,
    traveller_token String,
    country LowCardinality(String),
    nationality LowCardinality(String),
    visa_type LowCardinality(String),
    rule_id LowCardinality(String),
    allowed_days UInt16,
    entry_event_id String,
    entry_post LowCardinality(String),
    entry_at Nullable(DateTime64(3, 'UTC')),
    last_permitted_day Nullable(Date),
    exit_event_id String,
    exit_post LowCardinality(String),
    exit_at Nullable(DateTime64(3, 'UTC')),
    status LowCardinality(String),
    overstay_days UInt32,
    rules_version LowCardinality(String),
    key_id LowCardinality(String),
    version UInt8,
    updated_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(version)
ORDER BY stay_id
TTL toDateTime(updated_at) + INTERVAL 5 YEAR;

-- Every stay past its permitted days: left late, or still in the country with no exit recorded
-- (judged against today, so an open stay becomes an overstay the day after its last permitted day).
CREATE VIEW IF NOT EXISTS overstays AS
SELECT stay_id, traveller_token, country, nationality, visa_type, rule_id, allowed_days,
       entry_post, entry_at, last_permitted_day, exit_post, exit_at,
       if(status = 'closed', 'left_late', 'no_exit') AS kind,
       toUInt32(if(status = 'closed', overstay_days, dateDiff('day', assumeNotNull(last_permitted_day), today())))
           AS days_over
FROM stays FINAL
WHERE allowed_days > 0
  AND ((status = 'closed' AND overstay_days > 0) OR (status = 'open' AND last_permitted_day < today()));

-- Regional overstay view: counts per country of stay, nationality, visa type, kind and the month the
-- permitted stay ended; no tokens. Small cells are suppressed where it leaves the analysts' side
-- (dashboards, regional export), as for every regional count.
CREATE VIEW IF NOT EXISTS overstays_regional AS
SELECT toStartOfMonth(assumeNotNull(last_permitted_day)) AS month, country, nationality, visa_type, kind,
       count() AS stays, uniqExact(traveller_token) AS travellers,
       round(avg(days_over), 1) AS mean_days_over, max(days_over) AS max_days_over
FROM overstays
GROUP BY month, country, nationality, visa_type, kind;
