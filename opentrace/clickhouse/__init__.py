"""ClickHouse for OpenTrace: the client boundary (`client`) and the migration runner."""
