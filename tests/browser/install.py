"""A throwaway OpenTrace install that can really be updated: real git, the real app, the real agent.

`upstream` is a clone of this repository's committed HEAD (the release being served, 1.1.5);
the install is a clone of `upstream`, served from its own data dir by `scripts/run_local.py`
and updated by `python -m host_agent run --preset local`, exactly as `make run` does it.
Releases are commits tagged `v<version>` added to `upstream` afterwards, so the agent has
to fetch them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from host_agent.tests.conftest import git
from tests.helpers import ROOT

BROKEN_MIGRATION = '''"""A release whose migration fails: the browser tests' injected failure."""

from django.db import migrations


def fail(apps, schema_editor):
    raise RuntimeError("injected failure: this migration cannot be applied")


class Migration(migrations.Migration):
    dependencies = [("updates", "{leaf}")]
    operations = [migrations.RunPython(fail, migrations.RunPython.noop)]
'''


@dataclass
class Upstream:
    path: Path
    commits: dict[str, str] = field(default_factory=dict)

    def release(self, version: str, files: dict[str, str] | None = None) -> str:
        """Commit `files` and a VERSION bump, tag it `v<version>`; return the commit."""
        (self.path / "VERSION").write_text(version + "\n")
        for name, text in (files or {}).items():
            (self.path / name).write_text(text)
        git(self.path, "add", "-A")
        git(self.path, "commit", "-qm", f"release {version}")
        git(self.path, "tag", f"v{version}")
        self.commits[version] = git(self.path, "rev-parse", "HEAD").strip()
        return self.commits[version]

    def release_with_broken_migration(self, version: str) -> str:
        migrations = self.path / "updates" / "migrations"
        leaf = max(p.stem for p in migrations.glob("[0-9][0-9][0-9][0-9]_*.py"))
        return self.release(
            version,
            {f"updates/migrations/{int(leaf[:4]) + 1:04d}_broken.py": BROKEN_MIGRATION.format(leaf=leaf)},
        )


def clone_install(base: Path) -> tuple[Upstream, Path]:
    """(upstream, checkout): both at this repository's committed HEAD."""
    upstream = Upstream(base / "upstream")
    git(base, "clone", "-q", str(ROOT), str(upstream.path))
    checkout = base / "opentrace"
    git(base, "clone", "-q", str(upstream.path), str(checkout))
    return upstream, checkout
