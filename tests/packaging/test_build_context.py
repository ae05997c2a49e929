"""What `.dockerignore` lets into the production image's build context (`COPY . /app`).

The rules are applied here the way the engine applies them (patterns relative to the root,
`*` within one path segment, `**` across segments, a matched directory takes its contents,
the last matching line wins, `!` re-includes) to the files git tracks.
"""

from __future__ import annotations

import ast
import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

from tests.packaging.compose import ROOT


def _pattern(text: str) -> re.Pattern[str]:
    text = text.strip("/")
    out, i = "", 0
    while i < len(text):
        if text.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif text.startswith("**", i):
            out, i = out + ".*", i + 2
        elif text[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif text[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(text[i]), i + 1
    return re.compile(out)


def _rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        rules.append((negated, _pattern(line.lstrip("!"))))
    return rules


def in_context(path: str) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    included = True
    for negated, rule in _rules():
        if any(rule.fullmatch(prefix) for prefix in prefixes):
            included = negated
    return included


@cache
def tracked() -> list[str]:
    try:
        done = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("needs a git checkout to list the files")
    return [path for path in done.stdout.splitlines() if (ROOT / path).exists()]


def context() -> list[str]:
    return [path for path in tracked() if in_context(path)]


def test_the_matcher_reads_the_rules_as_the_engine_does():
    assert not in_context("tests/updates/test_runs.py")
    assert not in_context("updates/__pycache__/x.pyc")
    assert not in_context(".env")
    assert in_context(".env.example")
    assert in_context("updates/views.py")


def test_contract_is_in_the_image_the_backend_imports_it():
    shipped = context()
    assert "contract/registry.py" in shipped
    assert "contract/trigger.py" in shipped
    assert all(in_context(path) for path in tracked() if path.startswith("contract/"))


def test_tests_their_harness_and_benchmarks_stay_out_of_the_image():
    for folder in ("tests/", "testing/", "host_agent/tests/", "bench/"):
        members = [path for path in tracked() if path.startswith(folder)]
        assert members, folder
        assert not [path for path in members if in_context(path)], folder


def test_every_first_party_module_the_shipped_code_imports_is_shipped():
    shipped = set(context())
    top_level = {Path(path).parts[0].removesuffix(".py") for path in tracked()}
    missing = set()
    for path in sorted(p for p in shipped if p.endswith(".py")):
        tree = ast.parse((ROOT / path).read_text(encoding="utf-8"), filename=path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                package = name.split(".")[0]
                if package in top_level and not any(
                    p == f"{package}.py" or p.startswith(f"{package}/") for p in shipped
                ):
                    missing.add(f"{path} imports {name}")
    assert not missing
