"""deploy/proxy/haproxy.cfg, checked and run by the HAProxy of this machine (Debian's package).

The container suite runs it in front of real web containers; these tests need no engine:
the configuration is valid, with no web container ready the proxy answers with the
maintenance page (a release that declares downtime) instead of an error, and the agent's
runtime-API client (host_agent/proxy.py) holds, gives back and refuses slots on this real
HAProxy as it does in the proxy container.
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

from host_agent.proxy import API_PORT, API_SCRIPT, FORCED_MAINT, NO_ADDRESS, ProxyControl, ProxyError
from testing.helpers import ROOT, free_port

HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
CONFIG_DIR = ROOT / "deploy" / "proxy"
pytestmark = pytest.mark.skipif(HAPROXY is None, reason="needs HAProxy: apt-get install -y haproxy")


def local_config(tmp_path: Path, port: int, api_port: int | None = None) -> Path:
    """The shipped configuration with its folder and ports moved to this test's own."""
    for name in ("maintenance.html", "maintenance.json"):
        shutil.copy(CONFIG_DIR / name, tmp_path / name)
    text = (CONFIG_DIR / "haproxy.cfg").read_text()
    assert "    bind :8000\n" in text
    api = f"ipv4@127.0.0.1:{API_PORT} "
    assert api in text
    text = (
        text.replace("/usr/local/etc/haproxy", str(tmp_path))
        .replace("    bind :8000\n", f"    bind 127.0.0.1:{port}\n")
        .replace(api, f"ipv4@127.0.0.1:{api_port or free_port()} ")
    )
    path = tmp_path / "haproxy.cfg"
    path.write_text(text)
    return path


@pytest.fixture
def api_port() -> int:
    return free_port()


@pytest.fixture
def proxy(tmp_path: Path, api_port: int) -> Iterator[str]:
    port = free_port()
    config = local_config(tmp_path, port, api_port)
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


def control_of(api_port: int) -> ProxyControl:
    """The agent's client with the command it runs in the proxy container, run here instead."""
    script = API_SCRIPT.replace(f"/{API_PORT} ", f"/{api_port} ")
    assert script != API_SCRIPT

    def run(command: str) -> tuple[int, str]:
        argv = ["bash", "-c", script, "_", command]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return done.returncode, done.stdout + done.stderr

    return ProxyControl(run)


def test_the_runtime_api_lists_the_template_slots_free_until_a_container_is_discovered(proxy, api_port):
    slots = control_of(api_port).slots()
    assert [s.name for s in slots] == [f"web{n}" for n in range(1, 7)]
    assert all(not s.address and s.admin_state & NO_ADDRESS and not s.up for s in slots)


def test_free_slots_are_held_then_given_back(proxy, api_port):
    control = control_of(api_port)
    held = control.hold_free_slots()
    assert held == [f"web{n}" for n in range(1, 7)]
    assert all(s.admin_state & FORCED_MAINT for s in control.slots())
    assert control.hold_free_slots() == []  # already held: nothing twice
    assert control.release(held, timeout=5) == []
    assert not any(s.admin_state & FORCED_MAINT for s in control.slots())


def test_slots_an_earlier_run_left_held_are_found_and_given_back(proxy, api_port):
    control = control_of(api_port)
    control.set_state("web2", "maint")
    control.set_state("web5", "drain")
    assert control.release_stale() == ["web2", "web5"]
    assert control.release_stale() == []
    assert all(s.admin_state == NO_ADDRESS for s in control.slots())


def test_a_slot_the_proxy_does_not_have_is_an_error_not_a_silent_no_op(proxy, api_port):
    with pytest.raises(ProxyError, match="No such server"):
        control_of(api_port).set_state("web99", "maint")


def test_no_runtime_api_is_an_error_the_agent_falls_back_on(proxy):
    with pytest.raises(ProxyError):
        control_of(free_port()).slots()
