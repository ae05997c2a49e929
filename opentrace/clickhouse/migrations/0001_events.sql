-- Tracked events: one row per event an SDK sends (page views, clicks, custom events).
--
-- ReplacingMergeTree collapses an event an SDK retried (same project, day, event, user
-- and event_id) when parts merge; queries that must not count a retry twice read FINAL.
-- Partitions are months, so the 24-month TTL drops whole partitions instead of rewriting them.

CREATE TABLE IF NOT EXISTS ${db}.events${on_cluster}
(
    project_id UInt64,
    event_id UUID,
    event LowCardinality(String),
    distinct_id String,
    session_id String DEFAULT '',
    timestamp DateTime64(3, 'UTC'),
    properties String DEFAULT '{}' CODEC(ZSTD(3)),
    url String DEFAULT '' CODEC(ZSTD(3)),
    referrer String DEFAULT '' CODEC(ZSTD(3)),
    ip IPv6 DEFAULT toIPv6('::'),
    user_agent String DEFAULT '' CODEC(ZSTD(3)),
    received_at DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX session_idx session_id TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = ${replicated}ReplacingMergeTree(received_at)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (project_id, toDate(timestamp), event, cityHash64(distinct_id), event_id)
SAMPLE BY cityHash64(distinct_id)
TTL toDateTime(timestamp) + INTERVAL 24 MONTH DELETE
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1;

-- down
-- Every tracked event goes with the table: only a rollback past the first release runs this.
DROP TABLE IF EXISTS ${db}.events${on_cluster} SYNC;
