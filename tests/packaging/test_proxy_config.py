"""deploy/proxy/haproxy.cfg, checked and run by the HAProxy of this machine (Debian's package).

The container suite runs it in front of real web containers; these tests need no engine:
the configuration is valid, and with no web container ready the proxy answers with the
maintenance page (a release that declares downtime) instead of an error.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from testing.helpers import ROOT, free_port

HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
CONFIG_DIR = ROOT / "deploy" / "proxy"
pytestmark = pytest.mark.skipif(HAPROXY is None, reason="needs HAProxy: apt-get install -y haproxy")


def local_config(tmp_path: Path, port: int) -> Path:
    """The shipped configuration with its folder and port moved to this test's own."""
    for name in ("maintenance.html", "maintenance.json"):
        shutil.copy(CONFIG_DIR / name, tmp_path / name)
    text = (CONFIG_DIR / "haproxy.cfg").read_text()
    assert "    bind :8000\n" in text
    text = text.replace("/usr/local/etc/haproxy", str(tmp_path)).replace(
        "    bind :8000\n", f"    bind 127.0.0.1:{port}\n"
    )
    path = tmp_path / "haproxy.cfg"
    path.write_text(text)
    return path


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    config = local_config(tmp_path, port)
    proc = subprocess.Popen(
        [HAPROXY, "-db", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            urllib.request.urlopen(url + "/", timeout=1)
        except urllib.error.HTTPError:
            break
        except OSError:
            assert proc.poll() is None, "haproxy exited"
            assert time.monotonic() < deadline, "haproxy did not listen"
            time.sleep(0.1)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def get(url: str) -> urllib.error.HTTPError:
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(url, timeout=5)
    return raised.value


def test_the_shipped_configuration_is_valid(tmp_path):
    done = subprocess.run(
        [HAPROXY, "-c", "-f", str(local_config(tmp_path, free_port()))], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_with_no_web_container_ready_the_dashboard_gets_the_maintenance_page(proxy):
    answer = get(proxy + "/admin/")
    assert answer.code == 503
    assert answer.headers["Retry-After"] == "30"
    assert answer.headers["Content-Type"].startswith("text/html")
    assert "OpenTrace is being updated" in answer.read().decode()


def test_with_no_web_container_ready_the_api_gets_a_json_answer_to_retry(proxy):
    answer = get(proxy + "/api/track")
    assert answer.code == 503
    assert answer.headers["Retry-After"] == "30"
    assert answer.headers["Content-Type"] == "application/json"
    assert b"retry later" in answer.read()
