"""Browser tests: Playwright driving Debian's Chromium (`/usr/bin/chromium`) against a live OpenTrace.

One install serves the whole package (starting one costs most of a minute on a busy 2-core
machine): the end-to-end harness's site (this tree at v1.1.5, served by
`scripts/run_local.py`, its host agent in `local` mode, a registry on 127.0.0.1), with
releases 1.2.0 (good) and 1.2.2 (broken at healthcheck) tagged upstream and named staff
accounts. Tests that update it read the running version instead of assuming it.

Never downloads a browser: without `/usr/bin/chromium` (Debian: `apt-get install -y chromium`)
every test here is skipped with that reason. Screenshots go to the artifacts folder
(`OPENTRACE_BROWSER_ARTIFACTS`, else a temporary folder); a failing test also leaves a
screenshot of its last page there, and the site's logs in its report.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from testing.e2e import make_base_upstream
from testing.policies import offer
from testing.policies import update_defaults as update_defaults_
from testing.registry_server import RegistryServer, serving_registry
from testing.smtp import Certs, SmtpTestServer, make_certs, smtp_servers
from tests.browser.live import WIDTHS, open_as
from tests.browser.site import BROKEN_VERSION, FORGETFUL, NOTES, OFFERED_VERSION, VIEWER, BrowserSite
from updates.models import RegistryState

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


_FAILED = pytest.StashKey[bool]()


@pytest.fixture(scope="session")
def base_upstream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The end-to-end harness's upstream repository (this tree at v1.1.5), built once."""
    return make_base_upstream(tmp_path_factory.mktemp("e2e-base") / "upstream")


# The same SMTP test servers as the SMTP settings tests (aiosmtpd on 127.0.0.1).
@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def smtp_server(certs: Certs) -> Iterator[Callable[..., SmtpTestServer]]:
    yield from smtp_servers(certs)


# For the tests of the admin's pages on a live server (in this process), the update tests'
# settings: unsigned, on 1.1.5, stable channel, a registry on 127.0.0.1.
@pytest.fixture
def update_defaults(settings, tmp_path: Path) -> None:
    update_defaults_(settings, tmp_path / "updates")
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def registry_server(settings, update_defaults: None) -> Iterator[RegistryServer]:
    with serving_registry(settings) as server:
        yield server


@pytest.fixture
def offered(registry_server: RegistryServer, db: None) -> RegistryState:
    """The registry offers 1.2.0 (pinned to a commit) and a check has recorded it."""
    return offer(registry_server)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    site = getattr(item, "funcargs", {}).get("site")
    if report.failed and isinstance(site, BrowserSite):
        report.sections.append(("OpenTrace and agent logs (tail)", site.logs()))
    return report


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("OPENTRACE_BROWSER_ARTIFACTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("browser-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


# Package scope, not session: while Playwright runs, its event loop is visible on this thread,
# and Django would refuse the database to the tests of other folders that run after these.
@pytest.fixture(scope="package")
def browser():  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    # The live-server tests use the ORM on this thread while Playwright's loop is visible on
    # it, up to their database teardown; their calls are synchronous all the same.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            yield browser
            browser.close()
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


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


@pytest.fixture(scope="package")
def site(tmp_path_factory: pytest.TempPathFactory, base_upstream: Path) -> Iterator[BrowserSite]:
    if _skip_reason():
        pytest.skip(_skip_reason())
    site = BrowserSite(tmp_path_factory.mktemp("site"), base_upstream)
    try:
        # Slow to migrate: an update of a few seconds can pass between two polls of the page,
        # and the test asserts that the page showed it running.
        site.publish(OFFERED_VERSION, NOTES[OFFERED_VERSION], breakage="slow")
        site.publish(BROKEN_VERSION, NOTES[BROKEN_VERSION], breakage="healthcheck")
        site.offer(OFFERED_VERSION)
        # A broken release is rolled back after this long without a healthy /healthz.
        site.start(OPENTRACE_AGENT_HEALTHCHECK_TIMEOUT="20")
        # Staff who may check for updates, not install them nor read the runs.
        site.create_staff(VIEWER, permissions=("check_for_updates",))
        site.create_staff(FORGETFUL)
        yield site
    finally:
        site.stop()


@pytest.fixture(params=sorted(WIDTHS), ids=sorted(WIDTHS))
def width(request: pytest.FixtureRequest) -> int:
    """Each page test runs at 1280 px (desktop) and at 390 px (a phone)."""
    return WIDTHS[request.param]


@pytest.fixture
def admin_page(browser, live_server, superuser, width: int, artifacts: Path, request):  # type: ignore[no-untyped-def]
    """System updates' world for a logged-in superuser, at `width`; on failure a screenshot is kept."""
    from django.db import connections

    page = open_as(browser, live_server, superuser, width)
    page.base = live_server.url  # type: ignore[attr-defined]
    yield page
    if request.node.stash.get(_FAILED, False):
        from playwright.sync_api import Error as PlaywrightError

        with contextlib.suppress(PlaywrightError):
            page.screenshot(path=str(artifacts / f"FAILED-{request.node.name}.png"), full_page=True)
    page.context.close()
    # While Playwright's loop runs, Django keys connections by context, not by thread.
    connections.close_all()
