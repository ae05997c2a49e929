"""The registry client's HTTP rules (SPEC §4.3) against a real server on 127.0.0.1."""

from __future__ import annotations

import gzip
import json
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from contract.registry import parse_document
from testing.registry_server import drip, full_document, respond
from updates import registry
from updates.checking import run_check
from updates.models import RegistryCheck, RegistryState

pytestmark = pytest.mark.django_db

MIB = 1024 * 1024


def fetch_error(url: str, **kwargs) -> registry.RegistryError:
    with pytest.raises(registry.RegistryError) as caught:
        registry.fetch(url, **kwargs)
    return caught.value


def test_a_non_json_body_is_a_clear_error_recorded_on_the_check(registry_server):
    registry_server.serve("/version.json", respond(b"<html>maintenance</html>"))
    result = run_check(RegistryCheck.Trigger.MANUAL)
    assert result.outcome == "failed"
    assert "not JSON" in result.error
    assert result.permanent is True


def test_a_non_utf8_body_is_rejected(registry_server):
    registry_server.serve(
        "/version.json", respond('{"version": "1.2.0", "changelog": "é"}'.encode("latin-1"))
    )
    result = run_check(RegistryCheck.Trigger.MANUAL)
    assert "not UTF-8" in result.error


def test_a_10_mb_body_is_cut_off_at_256_kib(registry_server):
    registry_server.serve("/big", respond(b" " * (10 * MIB), content_length=False))
    error = fetch_error(registry_server.url("/big"))
    assert "larger than 256 KiB" in error.message


def test_a_declared_oversize_content_length_is_refused_before_reading(registry_server):
    registry_server.serve("/big", respond(b" " * (10 * MIB)))
    assert "larger than 256 KiB" in fetch_error(registry_server.url("/big")).message


def test_a_lying_small_content_length_does_not_let_a_big_body_through(registry_server):
    body = json.dumps({"version": "1.2.0", "changelog": "x" * (2 * MIB)}).encode()
    registry_server.serve("/lie", respond(body, headers={"Content-Length": "40"}))
    result = registry.fetch(registry_server.url("/lie"))
    # The client reads at most what was declared; what it got is a truncated, rejected document.
    assert len(result.body) <= 40
    with pytest.raises(registry.RegistryError, match="not JSON"):
        parse_document(result.body, keys={}, now=datetime.now(UTC))


def test_a_lying_large_content_length_with_a_short_body_is_an_error(registry_server):
    registry_server.serve("/short", respond(b'{"version": "1.2.0"}', headers={"Content-Length": "1000"}))
    error = fetch_error(registry_server.url("/short"), deadline=5)
    assert error.permanent is False


def test_a_gzip_bomb_is_cut_off_after_256_kib_decompressed(registry_server):
    bomb = gzip.compress(b" " * (50 * MIB))
    assert len(bomb) < 100 * 1024
    registry_server.serve("/bomb", respond(bomb, headers={"Content-Encoding": "gzip"}))
    assert "larger than 256 KiB" in fetch_error(registry_server.url("/bomb")).message


def test_a_gzip_document_is_decompressed(registry_server):
    body = json.dumps({"version": "1.2.0"}).encode()
    registry_server.serve("/gz", respond(gzip.compress(body), headers={"Content-Encoding": "gzip"}))
    assert registry.fetch(registry_server.url("/gz")).body == body


def test_a_slow_drip_server_is_cut_off_at_the_deadline(registry_server):
    registry_server.serve("/drip", drip(b" " * 200 + b'{"version": "1.2.0"}', every=0.05))
    started = time.monotonic()
    error = fetch_error(registry_server.url("/drip"), deadline=1.0)
    elapsed = time.monotonic() - started
    assert "longer than 1 s" in error.message
    assert error.permanent is False
    assert elapsed < 2.0


def test_the_default_deadline_is_30_seconds():
    assert registry.DEADLINE == 30.0
    assert (registry.CONNECT_TIMEOUT, registry.READ_TIMEOUT) == (5.0, 10.0)


def test_a_redirect_is_followed(registry_server):
    registry_server.serve_json("/target.json", {"version": "1.2.0"})
    registry_server.serve("/old", respond(b"", status=301, headers={"Location": "/target.json"}))
    result = registry.fetch(registry_server.url("/old"))
    assert result.url.endswith("/target.json")
    assert json.loads(result.body) == {"version": "1.2.0"}


def test_a_redirect_to_plain_http_on_another_host_is_refused(registry_server):
    registry_server.serve("/r", respond(b"", status=302, headers={"Location": "http://example.com/v.json"}))
    error = fetch_error(registry_server.url("/r"))
    assert "must be https" in error.message
    assert not any(r.path == "/v.json" for r in registry_server.requests)


def test_a_redirect_from_https_to_http_is_refused():
    # The rule itself, since the test server speaks plain http on loopback.
    with pytest.raises(registry.RegistryError, match="from https to http"):
        registry._check_url("http://127.0.0.1/v.json", "https://registry.example.com/v.json")


def test_a_redirect_loop_stops_after_3_redirects(registry_server):
    registry_server.serve("/loop", respond(b"", status=302, headers={"Location": "/loop"}))
    error = fetch_error(registry_server.url("/loop"))
    assert "more than 3 redirects" in error.message
    assert len([r for r in registry_server.requests if r.path == "/loop"]) == 4


def test_a_plain_http_url_is_refused_unless_loopback():
    with pytest.raises(registry.RegistryError, match="must be https"):
        registry.fetch("http://registry.example.com/version.json")


def test_429_with_retry_after_seconds_is_honoured(registry_server):
    registry_server.serve("/version.json", respond(b"slow down", status=429, headers={"Retry-After": "120"}))
    before = datetime.now(UTC)
    result = run_check(RegistryCheck.Trigger.SCHEDULED)
    state = RegistryState.load()
    assert result.outcome == "failed"
    assert result.http_status == 429
    assert state.next_check_at >= before + timedelta(seconds=119)
    assert state.retry_not_before >= before + timedelta(seconds=119)


def test_429_with_an_http_date_retry_after_is_honoured(registry_server):
    when = datetime.now(UTC) + timedelta(hours=2)
    registry_server.serve(
        "/version.json", respond(b"", status=429, headers={"Retry-After": format_datetime(when, usegmt=True)})
    )
    run_check(RegistryCheck.Trigger.SCHEDULED)
    state = RegistryState.load()
    assert abs((state.next_check_at - when).total_seconds()) < 5


def test_retry_after_is_capped_at_24_hours():
    assert registry.parse_retry_after("9999999") == 24 * 3600
    assert registry.parse_retry_after("garbage") is None


def test_503_retry_after_makes_check_now_wait_without_calling_the_registry(registry_server):
    registry_server.serve("/version.json", respond(b"", status=503, headers={"Retry-After": "600"}))
    run_check(RegistryCheck.Trigger.SCHEDULED)
    calls = len(registry_server.requests)
    result = run_check(RegistryCheck.Trigger.MANUAL)
    assert "asked us to wait" in result.error
    assert len(registry_server.requests) == calls


def test_other_failures_back_off_exponentially_with_jitter(registry_server, settings):
    settings.OPENTRACE_UPDATE_CHECK_INTERVAL = 21600
    registry_server.serve("/version.json", respond(b"", status=500))
    run_check(RegistryCheck.Trigger.SCHEDULED)
    first = RegistryState.load()
    assert first.consecutive_failures == 1
    assert first.next_check_at <= datetime.now(UTC) + timedelta(seconds=61)
    delays = [registry.backoff_delay(5, base=60, cap=21600) for _ in range(200)]
    assert max(delays) <= 60 * 16
    assert min(delays) < 60 * 8  # full jitter: spread over the whole range


def test_an_etag_is_stored_and_sent_and_a_304_reuses_the_stored_document(registry_server):
    registry_server.serve_json("/version.json", full_document({"version": "1.2.0"}), headers={"ETag": '"v1"'})
    run_check(RegistryCheck.Trigger.MANUAL)
    registry_server.serve(
        "/version.json", respond(b"", status=304, headers={"ETag": '"v1"'}, content_length=False)
    )
    result = run_check(RegistryCheck.Trigger.MANUAL)
    assert registry_server.requests[-1].headers.get("If-None-Match") == '"v1"'
    assert result.outcome == "not_modified"
    assert RegistryState.load().offer().latest.version == "1.2.0"


def test_a_304_rechecks_the_stored_documents_expiry(registry_server):
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    registry_server.serve_json(
        "/version.json", full_document({"version": "1.2.0"}, expires=soon), headers={"ETag": '"v1"'}
    )
    assert run_check(RegistryCheck.Trigger.MANUAL).outcome == "ok"
    registry_server.serve("/version.json", respond(b"", status=304, content_length=False))
    time.sleep(1.1)
    result = run_check(RegistryCheck.Trigger.MANUAL)
    state = RegistryState.load()
    assert result.outcome == "failed"
    assert "expired" in result.error
    assert state.staleness().stale is True


def test_an_unreachable_registry_is_a_transient_error(settings):
    from testing.helpers import closed_port

    error = fetch_error(f"http://127.0.0.1:{closed_port()}/version.json")
    assert error.permanent is False
    assert "could not reach" in error.message


def test_a_404_is_permanent(registry_server):
    error = fetch_error(registry_server.url("/missing"))
    assert (error.http_status, error.permanent) == (404, True)


def test_history_of_checks_is_bounded(registry_server, monkeypatch):
    from updates.models import registry as registry_models

    monkeypatch.setattr(registry_models, "CHECK_HISTORY", 5)
    registry_server.serve_json("/version.json", {"version": "1.2.0"})
    for _ in range(8):
        run_check(RegistryCheck.Trigger.MANUAL)
    assert RegistryCheck.objects.count() == 5


def test_tls_is_always_verified(tmp_path):
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    import trustme

    authority = trustme.CA()  # not trusted by the client: its certificates must be refused
    certificate = authority.issue_cert("127.0.0.1")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            respond(b'{"version": "9.9.9"}')(self)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    try:
        error = fetch_error(f"https://127.0.0.1:{server.server_address[1]}/version.json", deadline=5)
    finally:
        thread.join(timeout=5)
        server.server_close()
    assert "TLS verification failed" in error.message
