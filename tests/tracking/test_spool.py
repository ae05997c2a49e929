"""The spool on real files: what a writer leaves behind when it dies or fails, and what the
reader makes of it. Nothing acknowledged is lost; damaged bytes are kept aside."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from testing.helpers import ROOT
from tracking import quarantine
from tracking.buffer import BufferUnavailable
from tracking.buffer.spool import CHECKPOINT, SpoolReader, SpoolWriter, frame
from tracking.records import Event, Record, encode


def record(n: int, events: int = 1) -> bytes:
    return encode(
        Record(
            project_id=1,
            received_ms=1_700_000_000_000 + n,
            events=tuple(
                Event(uuid.uuid4(), "e", f"u{n}", 1_700_000_000_000, {"n": n}) for _ in range(events)
            ),
        )
    )


def distinct_ids(reader: SpoolReader) -> list[str]:
    batch = reader.read(1_000_000)
    return [] if batch is None else [e.distinct_id for r in batch.records for e in r.events]


def files(directory: Path) -> list[str]:
    return sorted(p.suffix for p in directory.iterdir() if p.name != CHECKPOINT)


def test_a_written_record_is_read_back_and_gone_after_commit(tmp_path):
    writer, reader = SpoolWriter(tmp_path), SpoolReader(tmp_path)
    writer.append(record(1))
    writer.append(record(2))
    batch = reader.read(10)
    assert [r.events[0].distinct_id for r in batch.records] == ["u1", "u2"]
    reader.commit(batch)
    assert reader.read(10) is None
    writer.append(record(3))
    assert distinct_ids(reader) == ["u3"]


def test_segments_rotate_by_size_and_sealed_ones_are_deleted_once_flushed(tmp_path):
    writer, reader = SpoolWriter(tmp_path, segment_bytes=300), SpoolReader(tmp_path)
    for n in range(10):
        writer.append(record(n))
    assert files(tmp_path).count(".seg") >= 3
    assert files(tmp_path).count(".open") == 1
    batch = reader.read(1000)
    assert len(batch.records) == 10
    reader.commit(batch)
    assert files(tmp_path) == [".open"]  # the live segment stays for its writer


def test_segments_rotate_by_age(tmp_path):
    now = [0.0]
    writer = SpoolWriter(tmp_path, segment_seconds=60, clock=lambda: now[0])
    writer.append(record(1))
    now[0] = 61.0
    writer.append(record(2))
    assert files(tmp_path) == [".open", ".seg"]


def test_a_batch_stops_near_max_events_and_the_rest_follows(tmp_path):
    writer, reader = SpoolWriter(tmp_path), SpoolReader(tmp_path)
    for n in range(5):
        writer.append(record(n, events=10))
    first = reader.read(25)
    assert first.events == 30  # whole records: the one that crossed the limit is included
    reader.commit(first)
    assert reader.read(1000).events == 20


WRITE_THEN_WAIT = """
import sys, time, uuid
from pathlib import Path
from tracking.buffer.spool import SpoolWriter
from tracking.records import Event, Record, encode
writer = SpoolWriter(Path(sys.argv[1]))
for n in range(int(sys.argv[2])):
    writer.append(encode(Record(1, n, (Event(uuid.uuid4(), "e", f"u{n}", 0, {}),))))
print("written", flush=True)
time.sleep(60)
"""


def test_the_segment_of_a_killed_writer_is_sealed_and_read_to_the_end(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITE_THEN_WAIT, str(tmp_path), "25"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout.readline().strip() == "written"
    reader = SpoolReader(tmp_path)
    assert reader.segments()[0][1] == "open"  # alive: its lock is held
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert reader.segments()[0][1] == "seg"  # dead: the reader sealed it
    batch = reader.read(100)
    assert [r.events[0].distinct_id for r in batch.records] == [f"u{n}" for n in range(25)]
    reader.commit(batch)
    assert list(tmp_path.glob("*.seg")) == []


def test_a_torn_last_record_and_a_damaged_one_are_kept_aside_and_the_rest_read(tmp_path):
    good = [frame(record(n)) for n in range(3)]
    damaged = bytearray(frame(record(9)))
    damaged[20] ^= 0x01
    (tmp_path / f"{1:020d}-1-00000000.seg").write_bytes(good[0] + bytes(damaged) + good[1] + good[2][:30])
    reader = SpoolReader(tmp_path)
    batch = reader.read(100)
    assert [r.events[0].distinct_id for r in batch.records] == ["u0", "u1"]
    assert batch.corrupt == [bytes(damaged[:-1]), good[2][:30]]
    kept = quarantine.keep(tmp_path / "rejected", batch.corrupt)
    assert [base64.b64decode(line) for line in kept.read_bytes().splitlines()] == batch.corrupt


def test_an_incomplete_line_of_a_live_segment_waits_for_its_writer(tmp_path):
    writer, reader = SpoolWriter(tmp_path), SpoolReader(tmp_path)
    writer.append(record(1))
    segment = next(tmp_path.glob("*.open"))
    half = frame(record(2))
    with open(segment, "ab") as handle:  # what a reader may see while a write is under way
        handle.write(half[:25])
    batch = reader.read(100)
    assert len(batch.records) == 1
    assert batch.corrupt == []
    reader.commit(batch)
    with open(segment, "ab") as handle:
        handle.write(half[25:])
    assert distinct_ids(reader) == ["u2"]


CAPPED_WRITER = """
import resource, signal, sys, uuid
from pathlib import Path
from tracking.buffer import BufferUnavailable
from tracking.buffer.spool import SpoolWriter
from tracking.records import Event, Record, encode
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over the limit, write() fails with EFBIG
writer = SpoolWriter(Path(sys.argv[1]))
acknowledged = 0
resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))
for n in range(100):
    try:
        writer.append(encode(Record(1, n, (Event(uuid.uuid4(), "e", f"u{n}", 0, {"pad": "x" * 50}),))))
    except BufferUnavailable as exc:
        print(acknowledged, exc, flush=True)
        break
    acknowledged += 1
"""


def test_a_write_the_disk_refuses_is_not_acknowledged_and_leaves_no_torn_record(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", CAPPED_WRITER, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    acknowledged, _, message = result.stdout.strip().partition(" ")
    assert "cannot write to the spool" in message
    batch = SpoolReader(tmp_path).read(1000)
    assert len(batch.records) == int(acknowledged) > 0
    assert batch.corrupt == []


def test_appends_from_many_threads_are_all_whole(tmp_path):
    writer = SpoolWriter(tmp_path, segment_bytes=4096)
    errors: list[BaseException] = []

    def append(worker: int) -> None:
        try:
            for n in range(50):
                writer.append(record(worker * 1000 + n))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    batch = SpoolReader(tmp_path).read(1_000_000)
    assert batch.corrupt == []
    assert sorted(r.received_ms for r in batch.records) == sorted(
        1_700_000_000_000 + w * 1000 + n for w in range(8) for n in range(50)
    )


def test_an_unreadable_checkpoint_rereads_everything_as_suspect(tmp_path):
    writer, reader = SpoolWriter(tmp_path), SpoolReader(tmp_path)
    writer.append(record(1))
    reader.commit(reader.read(10))
    (tmp_path / CHECKPOINT).write_text("{garbage")
    batch = reader.read(10)
    assert batch.suspect is True
    assert len(batch.records) == 1


def test_a_spool_that_cannot_be_created_is_unavailable(tmp_path):
    (tmp_path / "spool").write_text("a file where the directory should be")
    with pytest.raises(BufferUnavailable, match="cannot create a spool segment"):
        SpoolWriter(tmp_path / "spool").append(record(1))
