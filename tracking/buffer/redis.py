"""The Redis buffer (production): one list, records pushed at the tail, flushed from the head.

`append()` is one `RPUSH`; it is durable when Redis answers only if Redis writes its
append-only file with `appendfsync always` (Redis then fsyncs once per event-loop turn,
before it replies — one fsync for every client served in that turn). docker-compose.prod.yml
runs Redis that way; with `everysec` up to a second of acknowledged events can be lost if
the host loses power (docs/tracking.md).

Only the flusher removes records, with a script that trims the batch it read only if the
list still starts with that batch's first record, so even a second flusher (which the
flusher's lock prevents) could not trim records nobody inserted. `mark_suspect()` sets a key
the same script deletes.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from tracking.buffer import Batch, BufferUnavailable
from tracking.records import CorruptRecord, decode

LIST_KEY = "opentrace:tracking:buffer"
SUSPECT_KEY = "opentrace:tracking:suspect"
READ_RECORDS = 500  # records per LRANGE; each holds 1 to 1,000 events

# KEYS: the list, the suspect counter. ARGV: the batch's first record, its record count.
_TRIM = """
local head = redis.call('LINDEX', KEYS[1], 0)
if head ~= ARGV[1] then return 0 end
local count = tonumber(ARGV[2])
redis.call('LTRIM', KEYS[1], count, -1)
local suspect = tonumber(redis.call('GET', KEYS[2]) or '0') - count
if suspect > 0 then redis.call('SET', KEYS[2], suspect) else redis.call('DEL', KEYS[2]) end
return 1
"""
# Raise the suspect counter (records from the head that may be in ClickHouse) to ARGV[1].
_SUSPECT = """
local suspect = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > suspect then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
"""


@dataclass
class _Position:
    first: bytes
    count: int


class TrimRefused(BufferUnavailable):
    """The list no longer starts with the batch read: someone else removed records."""


class RedisBuffer:
    def __init__(self, url: str, *, key_prefix: str = "") -> None:
        self.url = url
        self.list_key = key_prefix + LIST_KEY
        self.suspect_key = key_prefix + SUSPECT_KEY
        self.client = redis.Redis.from_url(
            url, socket_connect_timeout=3, socket_timeout=5, health_check_interval=30
        )
        self._trim = self.client.register_script(_TRIM)
        self._suspect = self.client.register_script(_SUSPECT)

    def append(self, payload: bytes) -> None:
        try:
            self.client.rpush(self.list_key, payload)
        except redis.RedisError as exc:
            raise BufferUnavailable(f"cannot buffer in Redis: {exc}") from exc

    def read(self, max_events: int) -> Batch | None:
        try:
            suspect = int(self.client.get(self.suspect_key) or 0)
            batch = Batch(records=[], events=0, suspect=suspect > 0)
            count = 0
            first: bytes | None = None
            while batch.events < max_events:
                chunk = self.client.lrange(self.list_key, count, count + READ_RECORDS - 1)
                if not chunk:
                    break
                for payload in chunk:
                    assert isinstance(payload, bytes)  # the client does not decode responses
                    if first is None:
                        first = payload
                    count += 1
                    try:
                        record = decode(payload)
                    except CorruptRecord:
                        batch.corrupt.append(payload)
                        continue
                    batch.records.append(record)
                    batch.events += len(record.events)
                    if batch.events >= max_events:
                        break
                if len(chunk) < READ_RECORDS:
                    break
        except redis.RedisError as exc:
            raise BufferUnavailable(f"cannot read the Redis buffer: {exc}") from exc
        if first is None:
            return None
        batch.position = _Position(first=first, count=count)
        return batch

    def mark_suspect(self, batch: Batch) -> None:
        position = batch.position
        assert isinstance(position, _Position)
        try:
            self._suspect(keys=[self.suspect_key], args=[position.count])
        except redis.RedisError as exc:
            raise BufferUnavailable(f"cannot write to Redis: {exc}") from exc

    def commit(self, batch: Batch) -> None:
        position = batch.position
        assert isinstance(position, _Position)
        try:
            trimmed = self._trim(
                keys=[self.list_key, self.suspect_key], args=[position.first, position.count]
            )
        except redis.RedisError as exc:
            raise BufferUnavailable(f"cannot trim the Redis buffer: {exc}") from exc
        if not trimmed:
            raise TrimRefused("the Redis buffer changed under the flusher; nothing was removed")

    def backlog(self) -> int:
        try:
            return int(self.client.llen(self.list_key))
        except redis.RedisError as exc:
            raise BufferUnavailable(f"cannot read the Redis buffer: {exc}") from exc
