"""`contract/` and the agent run on the host's Python, which may be 3.10 (SPEC §2, §8).

The suite runs on 3.11, so 3.11-only syntax or standard-library names would pass here and
break on such a host. Parsed with 3.10's grammar, and searched for the names 3.11 added.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted([*ROOT.glob("contract/*.py"), *ROOT.glob("host_agent/*.py")])
NEW_IN_311 = {
    "datetime": {"UTC"},
    "typing": {"Self", "NotRequired", "Required", "LiteralString", "Never", "assert_never", "reveal_type"},
    "enum": {"StrEnum", "ReprEnum", "verify", "member", "nonmember"},
    "asyncio": {"TaskGroup", "timeout", "Runner"},
    "hashlib": {"file_digest"},
}
NEW_MODULES = {"tomllib", "wsgiref.types"}


def _problems(path: Path) -> list[str]:
    source = path.read_text(encoding="utf-8")
    try:
        tree = ast.parse(source, filename=str(path), feature_version=(3, 10))
    except SyntaxError as exc:
        return [f"{path.name}:{exc.lineno}: not 3.10 syntax ({exc.msg})"]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.TryStar):
            found.append(f"{path.name}:{node.lineno}: except*")
        elif isinstance(node, ast.Import):
            found += [f"{path.name}:{node.lineno}: {a.name}" for a in node.names if a.name in NEW_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module in NEW_MODULES:
                found.append(f"{path.name}:{node.lineno}: {node.module}")
            new = NEW_IN_311.get(node.module, set())
            found += [
                f"{path.name}:{node.lineno}: {node.module}.{a.name}" for a in node.names if a.name in new
            ]
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.attr in NEW_IN_311.get(node.value.id, set())
        ):
            found.append(f"{path.name}:{node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_the_host_side_code_uses_nothing_python_3_11_added():
    assert SOURCES
    assert [problem for path in SOURCES for problem in _problems(path)] == []


def test_the_guard_finds_what_3_11_added(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from datetime import UTC\nimport tomllib\nfrom typing import Self\nx = datetime.UTC\n")
    assert len(_problems(sample)) == 4


def test_on_a_python_3_10_with_the_agents_requirements_the_contract_and_the_agent_import():
    python = shutil.which("python3.10")
    probe = "import packaging.version, cryptography.hazmat.primitives.asymmetric.ed25519"
    if python is None or subprocess.run([python, "-c", probe], capture_output=True, check=False).returncode:
        pytest.skip("no python3.10 with packaging and cryptography on PATH")
    check = (
        "import contract.registry, contract.trigger, contract.offer, host_agent.cli, host_agent.agent\n"
        "from datetime import datetime, timezone\n"
        'doc = contract.registry.parse_document(b\'{"version": "v1.2.0.post1"}\', keys={},'
        " now=datetime.now(timezone.utc))\n"
        "assert doc.releases[0].version == '1.2.0.post1'\n"
    )
    done = subprocess.run([python, "-c", check], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
