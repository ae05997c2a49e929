"""The event ingest endpoint (SPEC §13): projects and write keys, `POST /api/track`, the
durable buffer events wait in, and the one writer that loads them into ClickHouse.

See docs/tracking.md for the design (buffer, writer, hold).
"""
