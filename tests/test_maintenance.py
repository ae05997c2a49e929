"""The maintenance page of a `local` install while a downtime release migrates (opentrace/maintenance.py).

The host agent writes `<DATA_DIR>/run/maintenance` naming the release it stopped; that
release answers the dashboard and /healthz with 503 and `Retry-After`, keeps the API
(tracking, the agent's reports) and liveness, and anything else at that path — another
version, garbage, a link, a FIFO, a huge file — serves as usual.
"""

from __future__ import annotations

import os
import threading

import pytest

from contract import maintenance
from opentrace.version import running_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def flag(settings, tmp_path):  # type: ignore[no-untyped-def]
    settings.DATA_DIR = tmp_path
    (tmp_path / "run").mkdir()
    return tmp_path / "run" / "maintenance"


def test_the_stopped_release_answers_the_dashboard_and_healthz_with_the_maintenance_page(client, flag):
    assert client.get("/admin/login/").status_code == 200
    flag.write_bytes(maintenance.encode(running_version()))

    page, health = client.get("/admin/login/"), client.get("/healthz")
    ready, live = client.get("/healthz/ready"), client.get("/healthz/live")

    assert (page.status_code, page["Retry-After"], page["Cache-Control"]) == (503, "30", "no-store")
    assert "OpenTrace is being updated" in page.content.decode()
    assert (health.status_code, health["Retry-After"]) == (503, "30")
    assert health.json() == {
        "status": "maintenance",
        "version": running_version(),
        "failing": ["maintenance"],
    }
    assert ready.status_code == 503
    assert live.status_code == 200
    assert client.get("/admin/").status_code == 503  # the dashboard, not only the login page
    # The API is not the dashboard: the agent's reports and the tracking endpoint still answer.
    for api in ("/api/updates/agent/heartbeat", "/api/track"):
        assert client.post(api, b"{}", content_type="application/json").status_code == 401, api

    flag.unlink()
    assert client.get("/admin/login/").status_code == 200


@pytest.mark.parametrize(
    "content",
    [
        maintenance.encode("0.0.1"),  # another release stopped: the new release serves
        b"",
        b"not json",
        b'{"stopped": 1}',
        b'["1.1.5"]',
        b"\xff\xfe",
    ],
)
def test_a_flag_for_another_release_or_garbage_serves_as_usual(client, flag, content):
    flag.write_bytes(content)
    assert client.get("/admin/login/").status_code == 200


def test_a_link_a_fifo_or_a_huge_file_at_the_flag_serves_as_usual(client, flag, tmp_path):
    target = tmp_path / "elsewhere"
    target.write_bytes(maintenance.encode(running_version()))
    flag.symlink_to(target)
    assert client.get("/admin/login/").status_code == 200
    flag.unlink()

    os.mkfifo(flag)
    answered: list[int] = []
    thread = threading.Thread(target=lambda: answered.append(client.get("/admin/login/").status_code))
    thread.start()
    thread.join(30)
    assert answered == [200]
    flag.unlink()

    flag.write_bytes(maintenance.encode(running_version()) + b" " * maintenance.LIMIT)
    assert client.get("/admin/login/").status_code == 200
