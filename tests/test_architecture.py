"""The architecture rules (SPEC §2, issue 15) are import-linter contracts, run in the suite.

`[tool.importlinter]` in pyproject.toml holds them: `contract` imports nothing of ours,
`host_agent` imports no Django and none of the apps, `smtpconfig` imports nothing of
`updates`, the apps import each other one way (no cycles), and the product imports nothing
of the test harness (`testing/`), the tests or the benchmarks (`host_agent/tests` may).
tests/updates/test_boundaries.py checks the finer rules inside `updates/` by reading the source.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from testing.helpers import ROOT

LINT_IMPORTS = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "lint-imports"
PACKAGES = ("contract", "host_agent", "opentrace", "updates", "smtpconfig", "tracking")
PRODUCT_ONLY = "the product imports nothing of testing/, tests/ or bench/"


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH: the packages of `tree`, not the ones this interpreter would find first.
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(tree / "pyproject.toml")],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    """The packages' Python files and pyproject.toml, to break a rule in without touching ours."""
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package,
            tmp_path / package,
            ignore=lambda _dir, names: [
                n for n in names if n == "__pycache__" or (Path(n).suffix and not n.endswith(".py"))
            ],
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_tree_keeps_every_contract():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("smtpconfig/mailer.py", "import updates.notices", "smtpconfig/ imports nothing of updates/"),
        ("contract/trigger.py", "from opentrace import version", "contract/ imports nothing of ours"),
        ("host_agent/git.py", "import django.conf", "host_agent/ imports no Django"),
        ("host_agent/outbox.py", "from updates import models", "host_agent/ imports no Django"),
        # A cycle: opentrace (the project) back up into an app that imports it.
        ("opentrace/version.py", "import tracking.views", "the apps import each other one way"),
        # The product and the test harness, the tests or the benchmarks.
        ("updates/checking.py", "from testing import registry_server", PRODUCT_ONLY),
        ("opentrace/health.py", "import tests.conftest", PRODUCT_ONLY),
        ("host_agent/git.py", "from bench import common", PRODUCT_ONLY),
        ("contract/trigger.py", "import testing.signer", PRODUCT_ONLY),
    ],
)
def test_a_broken_rule_fails_the_check(tree_copy: Path, module: str, line: str, contract: str):
    assert lint_imports(tree_copy).returncode == 0  # the copy alone keeps them all
    path = tree_copy / module
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}  # noqa\n", encoding="utf-8")

    result = lint_imports(tree_copy)

    assert result.returncode != 0
    broken = [row for row in result.stdout.splitlines() if " BROKEN" in row]
    assert any(row.startswith(contract) for row in broken), result.stdout
