"""A restore never rewinds the tracking endpoint's spool (`<DATA_DIR>/tracking`).

Events acknowledged after the backup wait there (docs/tracking.md); restoring the set's
older copy over it would discard them. So a set carries no `tracking/`, and a restore
leaves the spool as it is.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

from testing.agent import restore, run_agent


def test_a_backup_leaves_out_the_spool_and_a_restore_does_not_touch_it(project, backend):
    spool = project.data_dir / "tracking" / "spool"
    spool.mkdir(parents=True)
    segment = spool / "00000000000000000001-1-00000000.seg"
    segment.write_bytes(b"acknowledged before the backup\n")
    done = run_agent(project, backend, "backup")
    assert done.returncode == 0, done.stderr
    backup = Path(done.stdout.strip())
    with tarfile.open(backup / "data.tar.gz") as archive:
        assert not [n for n in archive.getnames() if n.split("/")[0] == "tracking"]

    with segment.open("ab") as handle:
        handle.write(b"acknowledged after the backup\n")
    restored = restore(project, backup)
    assert restored.returncode == 0, restored.stderr
    assert segment.read_bytes() == b"acknowledged before the backup\nacknowledged after the backup\n"
