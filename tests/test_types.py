"""The types are checked as part of the test command: mypy with django-stubs ([tool.mypy] in
pyproject.toml), strict on `contract/` and `host_agent/`, no `type: ignore` without a reason."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from testing.helpers import ROOT

STRICT = ("contract", "host_agent")


def mypy(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    # The Django plugin imports the settings: a data dir of its own, and not the install's .env.
    env = {**os.environ, "OPENTRACE_ENV_FILE": "", "OPENTRACE_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "mypy", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def test_mypy_is_clean(tmp_path):
    result = mypy(data_dir=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_contract_and_the_agent_are_checked_strictly(tmp_path):
    # An unannotated function is an error there, and only there. mypy reads each module with
    # a function appended from a copy (--shadow-file): the tree itself is not touched.
    modules = ["contract/jsonsafe.py", "host_agent/clock.py", "updates/formatting.py"]
    args: list[str] = []
    for module in modules:
        copy = tmp_path / module.replace("/", "_")
        copy.write_text((ROOT / module).read_text(encoding="utf-8") + "\n\ndef probe(x):\n    return x\n")
        args += ["--shadow-file", module, str(copy)]
    result = mypy(*args, *modules, data_dir=tmp_path / "data")
    flagged = set(re.findall(r"^(\w+)/\w+\.py:\d+: error: .*\[no-untyped-def\]", result.stdout, re.M))
    assert flagged == set(STRICT), result.stdout


def test_every_type_ignore_names_its_code_and_says_why():
    # `# type: ignore[code]  # why` — mypy itself reports unused ones (warn_unused_ignores).
    bare = []
    for package in (*STRICT, "opentrace", "updates", "smtpconfig", "tracking", "scripts", "bench", "testing"):
        for path in [*(ROOT / package).rglob("*.py"), ROOT / "restore_all.py"]:
            if "tests" in path.relative_to(ROOT).parts:
                continue
            for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if "type: ignore" in text and not re.search(r"type: ignore\[[\w,-]+\]\s+#\s*\S", text):
                    bare.append(f"{path.relative_to(ROOT)}:{number}: {text.strip()}")
    assert bare == []
