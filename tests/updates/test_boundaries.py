"""Who may import whom (issue 15's architecture rules, checked by reading the source).

The install flow has one owner, `updates.actions`: the models write rows and touch no file,
the trigger module touches files and knows no model. Between the apps imports go one way:
`updates` uses `smtpconfig` (the outbound-mail boundary, SPEC §2) and `opentrace` (the
project), never the reverse.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APPS = ("opentrace", "updates", "smtpconfig", "tracking")


def imported_modules(path: Path) -> Iterator[str]:
    """Every module `path` imports, at the top or inside a function, as absolute names."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def sources(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "migrations" not in p.relative_to(ROOT).parts)


def imports_of(package: str) -> dict[Path, set[str]]:
    return {path: set(imported_modules(path)) for path in sources(package)}


def offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)} imports {name}"
        for path, names in imports_of(package).items()
        for name in sorted(names)
        if name in forbidden or name.startswith(tuple(f"{f}." for f in forbidden))
    ]


def test_the_scanner_sees_function_level_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from updates import trigger\n    import smtpconfig.mailer\n")
    assert {"updates", "updates.trigger", "smtpconfig.mailer"} <= set(imported_modules(module))


def test_smtpconfig_imports_nothing_of_updates():
    assert offenders("smtpconfig", ("updates",)) == []


def test_smtpconfig_names_no_update_model_or_task_by_string():
    # apps.get_model("updates", ...) or a task named "updates.tasks..." couples it just the same.
    texts = {path: path.read_text(encoding="utf-8") for path in sources("smtpconfig")}
    assert [str(path.relative_to(ROOT)) for path, text in texts.items() if '"updates' in text] == []


def test_the_trigger_module_knows_no_model():
    names = set(imported_modules(ROOT / "updates" / "trigger.py"))
    assert not {n for n in names if n.startswith(("updates.models", "updates.actions", "django.db"))}


def test_the_models_touch_no_file_module():
    assert offenders("updates/models", ("updates.trigger", "updates.actions", "updates.notices")) == []


@pytest.mark.parametrize("package", ["updates/views.py", "updates/tasks.py", "updates/admin.py"])
def test_callers_go_through_the_actions_not_the_trigger_file(package):
    names = set(imported_modules(ROOT / package))
    assert "updates.trigger" not in names
    assert not {n for n in names if n.startswith("updates.trigger.")}


def app_graph() -> dict[str, set[str]]:
    present = [app for app in APPS if (ROOT / app).is_dir()]
    graph: dict[str, set[str]] = {app: set() for app in present}
    for app in present:
        for names in imports_of(app).values():
            graph[app] |= {name.split(".")[0] for name in names} & set(present) - {app}
    return graph


def test_no_import_cycle_between_the_apps():
    graph = app_graph()

    def cycle_from(start: str, node: str, seen: tuple[str, ...]) -> tuple[str, ...] | None:
        for nxt in sorted(graph[node]):
            if nxt == start:
                return (*seen, nxt)
            if nxt not in seen:
                found = cycle_from(start, nxt, (*seen, nxt))
                if found:
                    return found
        return None

    cycles = [" → ".join(c) for app in graph if (c := cycle_from(app, app, (app,)))]
    assert cycles == [], graph
    assert graph["updates"] >= {"smtpconfig"}  # the graph is really read
