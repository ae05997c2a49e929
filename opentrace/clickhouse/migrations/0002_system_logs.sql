-- Platform logs (background jobs, updates, ingestion problems) that the admin can search.
--
-- `details` holds JSON text. Ordered by level and module first because the admin filters
-- on them; monthly partitions keep the 90-day TTL a matter of dropping whole parts.

CREATE TABLE IF NOT EXISTS ${db}.system_logs${on_cluster}
(
    time DateTime64(6, 'UTC') DEFAULT now64(6),
    level LowCardinality(String),
    module LowCardinality(String),
    message String CODEC(ZSTD(3)),
    details String DEFAULT '{}' CODEC(ZSTD(3)),
    host LowCardinality(String) DEFAULT hostName(),
    CONSTRAINT level_is_known CHECK level IN ('DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL')
)
ENGINE = ${replicated}MergeTree()
PARTITION BY toYYYYMM(time)
ORDER BY (level, module, time)
TTL toDateTime(time) + INTERVAL 90 DAY DELETE
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1;

-- down
DROP TABLE IF EXISTS ${db}.system_logs${on_cluster} SYNC;
