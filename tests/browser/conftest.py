"""Browser tests: Playwright driving Debian's Chromium (`/usr/bin/chromium`) against a live OpenTrace.

One install serves the whole session (starting one costs most of a minute on a busy 2-core
machine): a clone of this repository's HEAD run by `scripts/run_local.py` with its host agent
in `local` mode, a registry server on 127.0.0.1 offering releases tagged in its upstream, and
named staff accounts. Tests that update it read the running version instead of assuming it.

Never downloads a browser: without `/usr/bin/chromium` (Debian: `apt-get install -y chromium`)
every test here is skipped with that reason. Screenshots go to the artifacts folder
(`OPENTRACE_BROWSER_ARTIFACTS`, else a temporary folder printed in the summary); a failing
test also leaves a screenshot of its last page there.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.browser.install import Upstream, clone_install
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
BROKEN_VERSION = "1.3.0"
NOTES = {
    OFFERED_VERSION: "Faster funnels.\n\nSee https://opentrace.example.com/releases/1.2.0 for details.",
    BROKEN_VERSION: "Retention cohorts. (Its migration fails: the tests' injected failure.)",
}


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
    server = getattr(item, "funcargs", {}).get("opentrace_server")
    if report.failed and isinstance(server, LiveServer):
        report.sections.append(("OpenTrace log (tail)", server.log_tail()))
        report.sections.append(("host agent log (tail)", server.agent_log_tail()))
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
        from playwright.sync_api import Error as PlaywrightError

        with contextlib.suppress(PlaywrightError):
            page.screenshot(path=str(artifacts / f"FAILED-{request.node.name}.png"), full_page=True)
    context.close()


@dataclass
class Releases:
    """The releases in `upstream`, and what the registry offers of them."""

    upstream: Upstream
    registry: RegistryServer
    meta_version: int = 0

    def offer(self, *versions: str) -> None:
        # Each new document has a higher meta_version: a lower one would be refused as a rollback.
        self.meta_version += 1
        releases = [
            {
                "version": version,
                "notes": NOTES[version],
                "git_commit": self.upstream.commits[version],
                "published_at": "2026-11-20T00:00:00Z",
            }
            for version in versions
        ]
        self.registry.serve_json("/version.json", full_document(*releases, meta_version=self.meta_version))


@pytest.fixture(scope="session")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Releases]:
    """1.2.0 (a good release) and 1.3.0 (its migration fails) tagged upstream; 1.2.0 offered."""
    if _skip_reason():
        pytest.skip(_skip_reason())
    upstream, _ = clone_install(tmp_path_factory.mktemp("install"))
    upstream.release(OFFERED_VERSION)
    upstream.release_with_broken_migration(BROKEN_VERSION)
    registry = start_registry_server()
    releases = Releases(upstream, registry)
    releases.offer(OFFERED_VERSION)
    yield releases
    registry.server.shutdown()
    registry.server.server_close()


@pytest.fixture(scope="session")
def opentrace_server(releases: Releases) -> Iterator[LiveServer]:
    """The install, running what was HEAD when the session started, with its agent."""
    checkout = releases.upstream.path.parent / "opentrace"
    server = start_live_server(checkout, OPENTRACE_REGISTRY_URL=releases.registry.url("/version.json"))
    try:
        server.create_staff(VIEWER, FORGETFUL)
        yield server
    finally:
        server.stop()
