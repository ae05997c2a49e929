"""Browser tests: Playwright driving Debian's Chromium (`/usr/bin/chromium`) against a live OpenTrace.

Never downloads a browser: without `/usr/bin/chromium` (Debian: `apt-get install -y chromium`)
every test here is skipped with that reason. Screenshots go to the artifacts folder
(`OPENTRACE_BROWSER_ARTIFACTS`, else a temporary folder printed in the summary); a failing
test also leaves a screenshot of its last page there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.live_server import LiveServer, start_live_server

# The same SMTP test servers as the SMTP settings tests (aiosmtpd on 127.0.0.1).
from tests.smtp.conftest import certs, smtp_server  # noqa: F401
from tests.updates.registry_server import RegistryServer, full_document, start_registry_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
HERE = Path(__file__).parent
# Generous for a 2-core machine; every wait is explicit and ends as soon as its condition holds.
TIMEOUT_MS = 20_000

# Named staff accounts without any permission, created once for the session's server.
VIEWER = ("viewer", "viewer@example.com", "viewer-Pa55-word")
FORGETFUL = ("forgetful", "forgetful@example.com", "the-old-Pa55word")

OFFERED_VERSION = "1.2.0"
OFFERED_NOTES = "Faster funnels.\n\nSee https://opentrace.example.com/releases/1.2.0 for details."


def _skip_reason() -> str | None:
    if not CHROMIUM.exists():
        return f"needs Debian's Chromium at {CHROMIUM} (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "needs playwright (requirements-dev.txt)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _skip_reason()
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.slow)
            # aiosmtpd warns about AUTH on plain SMTP; ours exists only on 127.0.0.1 in a test.
            item.add_marker(pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS"))
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("OPENTRACE_BROWSER_ARTIFACTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("browser-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def browser():  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, artifacts: Path, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """A fresh browser context (no cookies) per test; on failure its last page is saved."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    yield page
    if request.node.stash.get(_FAILED, False):
        page.screenshot(path=str(artifacts / f"FAILED-{request.node.name}.png"), full_page=True)
    context.close()


@pytest.fixture(scope="session")
def registry() -> Iterator[RegistryServer]:
    """The version registry, offering 1.2.0 with notes."""
    server = start_registry_server()
    server.serve_json(
        "/version.json",
        full_document(
            {
                "version": OFFERED_VERSION,
                "severity": "normal",
                "notes": OFFERED_NOTES,
                "published_at": "2026-11-20T00:00:00Z",
            }
        ),
    )
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture(scope="session")
def opentrace_server(
    tmp_path_factory: pytest.TempPathFactory, registry: RegistryServer
) -> Iterator[LiveServer]:
    if _skip_reason():
        pytest.skip(_skip_reason())
    server = start_live_server(
        tmp_path_factory.mktemp("live-server"), OPENTRACE_REGISTRY_URL=registry.url("/version.json")
    )
    try:
        server.create_staff(VIEWER, FORGETFUL)
        yield server
    finally:
        server.stop()
