"""Under the unit's UMask=0027 the web container can still write the ClickHouse export (issue 16).

Root made `backups/` and the set 0750 root:root under that umask, so the container's user
(the data dir's owner, uid 10001) could not reach the `clickhouse/` folder it was given:
compose backups with ClickHouse failed under systemd. The exporter here stands in for
`docker compose exec -T web python -m host_agent.chdump export`: it writes as uid 10001.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from host_agent.backup import BackupTools, create_backup

APP_UID = 10001

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="changing users needs root")

EXPORTER = """#!/bin/sh
for last; do :; done
exec setpriv --reuid={uid} --regid={uid} --clear-groups sh -c \\
  'echo rows > "$1/events.native" && echo "1 table exported"' _ "$last"
"""


@pytest.fixture
def passable(tmp_path):
    """The app's uid may pass through (not list) the test's folders, as through /opt on a host."""
    opened = []
    for folder in [tmp_path, *tmp_path.parents]:
        if folder == Path("/"):
            break
        mode = stat.S_IMODE(folder.stat().st_mode)
        if not mode & 0o001:
            opened.append((folder, mode))
            folder.chmod(mode | 0o001)
    yield tmp_path
    # Not the shared ancestors: other xdist workers' attacker steps pass through them too.
    for folder, mode in opened:
        if folder == tmp_path:
            folder.chmod(mode)


def test_the_data_dirs_owner_writes_the_export_into_a_set_root_makes_under_umask_0027(passable):
    data_dir = passable / "data"
    data_dir.mkdir()
    os.chown(data_dir, APP_UID, APP_UID)
    exporter = passable / "exporter"
    exporter.write_text(EXPORTER.format(uid=APP_UID))
    exporter.chmod(0o755)
    tools = BackupTools(
        data_dir=data_dir,
        project_dir=passable,
        env={"PATH": os.environ["PATH"]},
        python_cmd=[str(exporter)],
        writer=(APP_UID, APP_UID),
        clickhouse=True,
    )

    previous = os.umask(0o027)
    try:
        directory = create_backup(tools, from_version="1.1.5", commit="c" * 40)
    finally:
        os.umask(previous)

    assert (directory / "clickhouse" / "events.native").read_text() == "rows\n"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700  # closed again once the export is in
    listing = subprocess.run(
        [
            "setpriv",
            f"--reuid={APP_UID}",
            f"--regid={APP_UID}",
            "--clear-groups",
            "ls",
            str(data_dir / "backups"),
        ],
        capture_output=True,
        check=False,
    )
    assert listing.returncode != 0  # the app may pass through backups/, not list it
