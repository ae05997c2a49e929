"""`manage.py check_updates [--json]`: the same code path as the scheduled check, and its exit codes."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys

import pytest
from django.core.management import call_command

from testing.helpers import ROOT, clean_env, closed_port
from testing.registry_server import envelope, full_document, respond

pytestmark = pytest.mark.django_db


def check_updates(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("check_updates", *args, stdout=out)
    except SystemExit as exit_:
        return int(exit_.code or 0), out.getvalue()
    return 0, out.getvalue()


def test_json_reports_an_available_update_and_exits_0(registry_server):
    registry_server.serve_json("/version.json", full_document({"version": "1.2.0", "severity": "security"}))
    code, out = check_updates("--json")
    assert code == 0
    assert json.loads(out) == {
        "current": "1.1.5",
        "latest": "1.2.0",
        "update_available": True,
        "severity": "security",
        "verified": False,
        "error": None,
    }


def test_json_reports_up_to_date_and_exits_0(registry_server):
    registry_server.serve_json("/version.json", {"version": "1.1.5"})
    code, out = check_updates("--json")
    assert code == 0
    data = json.loads(out)
    assert (data["latest"], data["update_available"], data["error"]) == (None, False, None)


def test_a_verified_document_says_so(registry_server, signing_key):
    inner = json.dumps(full_document({"version": "1.2.0"})).encode()
    registry_server.serve("/version.json", respond(envelope(inner, signing_key)))
    code, out = check_updates("--json")
    assert code == 0
    assert json.loads(out)["verified"] is True


def test_a_rejected_document_exits_1_with_the_error(registry_server):
    registry_server.serve("/version.json", respond(b"not json"))
    code, out = check_updates("--json")
    assert code == 1
    data = json.loads(out)
    assert "not JSON" in data["error"]
    assert data["update_available"] is False


def test_without_json_it_prints_a_human_summary(registry_server):
    registry_server.serve_json("/version.json", {"version": "1.2.0"})
    code, out = check_updates()
    assert code == 0
    assert "latest 1.2.0 (normal)" in out
    assert "unverified" in out


def test_the_real_command_exits_1_when_the_registry_is_unreachable(tmp_path):
    environment = clean_env(
        OPENTRACE_DATA_DIR=str(tmp_path / "data"),
        OPENTRACE_REGISTRY_URL=f"http://127.0.0.1:{closed_port()}/version.json",
    )
    environment.pop("OPENTRACE_REGISTRY_KEYS", None)
    run = [sys.executable, "manage.py"]
    subprocess.run([*run, "migrate", "--no-input", "-v0"], cwd=ROOT, env=environment, check=True, timeout=120)
    result = subprocess.run(
        [*run, "check_updates", "--json"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert "could not reach the registry" in data["error"]
    assert data["current"] == (ROOT / "VERSION").read_text().strip()


def test_registry_keygen_and_sign_registry_produce_a_document_installs_accept(
    registry_server, settings, tmp_path
):
    key_file = tmp_path / "k.pem"
    out = io.StringIO()
    call_command(
        "registry_keygen", "--out", str(key_file), "--keyid", "pub1", stdout=out, stderr=io.StringIO()
    )
    pinned = out.getvalue().strip().removeprefix("OPENTRACE_REGISTRY_KEYS=")
    keyid, _, b64 = pinned.partition(":")
    assert keyid == "pub1"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    document = tmp_path / "in.json"
    document.write_text(json.dumps(full_document({"version": "1.2.0"})))
    signed = io.StringIO()
    call_command("sign_registry", "--key", str(key_file), "--keyid", "pub1", str(document), stdout=signed)
    assert base64.b64decode(json.loads(signed.getvalue())["signed"]) == document.read_bytes()
    settings.OPENTRACE_REGISTRY_KEYS = {keyid: base64.b64decode(b64)}
    registry_server.serve("/version.json", respond(signed.getvalue().encode()))
    code, out_json = check_updates("--json")
    assert code == 0
    assert json.loads(out_json)["verified"] is True


def test_registry_keygen_refuses_to_overwrite_a_key(tmp_path):
    from django.core.management.base import CommandError

    existing = tmp_path / "k.pem"
    existing.write_text("precious")
    with pytest.raises(CommandError, match="already exists"):
        call_command("registry_keygen", "--out", str(existing), stdout=io.StringIO(), stderr=io.StringIO())
    assert existing.read_text() == "precious"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not json", "not JSON"),
        (json.dumps({"version": "1.2.0"}).encode(), "unsupported schema"),
        (json.dumps(full_document({"version": "1.2.0"}, project="x")).encode(), "not 'opentrace'"),
    ],
)
def test_sign_registry_refuses_what_installs_would_refuse(tmp_path, content, message):
    from django.core.management.base import CommandError

    key_file = tmp_path / "k.pem"
    call_command("registry_keygen", "--out", str(key_file), stdout=io.StringIO(), stderr=io.StringIO())
    document = tmp_path / "in.json"
    document.write_bytes(content)
    with pytest.raises(CommandError, match=message):
        call_command("sign_registry", "--key", str(key_file), str(document), stdout=io.StringIO())


def test_sign_registry_refuses_a_key_that_is_not_ed25519(tmp_path):
    from django.core.management.base import CommandError

    bad_key = tmp_path / "bad.pem"
    bad_key.write_text("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    document = tmp_path / "in.json"
    document.write_text(json.dumps(full_document({"version": "1.2.0"})))
    with pytest.raises(CommandError, match="not an unencrypted PEM private key"):
        call_command("sign_registry", "--key", str(bad_key), str(document), stdout=io.StringIO())
