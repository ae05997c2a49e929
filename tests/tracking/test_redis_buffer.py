"""The Redis list as the buffer (production), against the configured Redis."""

from __future__ import annotations

import uuid

import pytest
from django.conf import settings

from testing.helpers import closed_port
from testing.tracking import event, post
from tracking.buffer import BufferUnavailable
from tracking.buffer.redis import RedisBuffer, TrimRefused
from tracking.records import Event, Record, encode

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_buffer():
    name = uuid.uuid4().hex
    buffer = RedisBuffer(settings.CELERY_BROKER_URL, key_prefix=f"test:{name}:")
    yield buffer
    buffer.client.delete(buffer.list_key, buffer.suspect_key)


def record(n: int) -> bytes:
    return encode(Record(1, n, (Event(uuid.uuid4(), "e", f"u{n}", 0, {}),)))


def test_it_reads_oldest_first_and_commit_removes_exactly_the_batch(redis_buffer):
    for n in range(5):
        redis_buffer.append(record(n))
    batch = redis_buffer.read(3)
    assert [r.received_ms for r in batch.records] == [0, 1, 2]
    redis_buffer.append(record(5))
    redis_buffer.commit(batch)
    assert [r.received_ms for r in redis_buffer.read(100).records] == [3, 4, 5]


def test_the_suspect_count_covers_exactly_what_was_marked(redis_buffer):
    for n in range(4):
        redis_buffer.append(record(n))
    batch = redis_buffer.read(2)
    redis_buffer.mark_suspect(batch)
    smaller = redis_buffer.read(1)
    assert smaller.suspect is True
    redis_buffer.commit(smaller)
    assert redis_buffer.read(1).suspect is True  # the second marked record
    redis_buffer.commit(redis_buffer.read(1))
    assert redis_buffer.read(1).suspect is False


def test_a_batch_someone_else_removed_is_never_trimmed_again(redis_buffer):
    for n in range(4):
        redis_buffer.append(record(n))
    batch = redis_buffer.read(2)
    redis_buffer.client.lpop(redis_buffer.list_key)  # a second writer, against the rules
    with pytest.raises(TrimRefused):
        redis_buffer.commit(batch)
    assert redis_buffer.backlog() == 3


def test_undecodable_items_come_back_as_corrupt(redis_buffer):
    redis_buffer.append(b"not a record")
    redis_buffer.append(record(1))
    batch = redis_buffer.read(10)
    assert batch.corrupt == [b"not a record"]
    assert len(batch.records) == 1


def test_an_unreachable_redis_is_a_503_not_a_500(client, project, settings):
    settings.OPENTRACE_TRACKING_BUFFER = f"redis://127.0.0.1:{closed_port()}/0"
    response = post(client, {"events": [event()]}, project.write_key)
    assert response.status_code == 503
    with pytest.raises(BufferUnavailable):
        RedisBuffer(settings.OPENTRACE_TRACKING_BUFFER).read(10)
