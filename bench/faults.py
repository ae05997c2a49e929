"""The fault-injection suite: kills, outages, concurrent clicks and hostile inputs, counted.

    .venv/bin/python bench/faults.py [--seed 9] [--api 600] [--triggers 400] [--documents 1500]

One real backend (gunicorn with 4 workers, DEBUG off, a fresh PostgreSQL database) serves
every part. Exit status 1 when a must-be-zero count is not 0.

1. **Kills at each step boundary.** For every boundary (`claimed`, each of the seven steps
   as it is about to start, `finish`) a fresh fake project (real git) is updated by
   `python -m host_agent once` with `OPENTRACE_AGENT_CRASH_AT=<boundary>`, which SIGKILLs the
   agent there; then `once` runs again. Survived = the backend's run ended in the expected
   state (failed before `deploy`, rolled_back from `deploy` on, succeeded after the last
   step), the project serves the right version at the right commit, and no event was lost:
   the backend holds seq 1..n without a gap and the agent's outbox is empty.
2. **Backend outage.** An update runs while every agent→backend request answers 503 (the
   fake app's /healthz stays up); `once` gives up delivering after its 10 s; the backend
   comes back and the next `once` delivers the rest. Events lost = gaps + what stays queued.
3. **Concurrent clicks.** Rounds of 20 simultaneous "Install update" POSTs over HTTP (four
   logged-in admin sessions; half re-submit one confirmation form, half submit their own)
   against the four gunicorn workers. Duplicated runs = runs created beyond one per round.
4. **Hostile inputs** (seeded, reproducible): mutated and hand-written bodies against both
   agent API endpoints — re-signed so that they reach the parser, plus unsigned/badly signed
   ones; mutated trigger files (and files that are links, FIFOs, directories, oversize)
   against the agent's trigger reader and the backend's; mutated registry documents
   (unsigned, and signed envelopes with keys pinned) against the backend's parser and the
   agent's manifest reader. A crash is an HTTP 500, a 503 (the API's catch-all: the
   database is up, so a 503 is a bug caught) or a dropped connection, or an exception that
   is not the component's own rejection error. The registry parser also has a catch-all that
   turns an unexpected exception into a rejection; those are counted apart ("caught").
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from testing.registry_server import iso_in

DB = "ot_bench_faults"
BOUNDARIES = [
    "claimed",
    "preflight",
    "backup",
    "fetch",
    "build",
    "deploy",
    "migrate",
    "healthcheck",
    "finish",
]
EXPECTED = (
    {b: "failed" for b in BOUNDARIES[:5]}
    | {b: "rolled_back" for b in BOUNDARIES[5:8]}
    | {"finish": "succeeded"}
)

HOSTILE_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**31,
    2**63,
    10**400,
    1.5,
    -0.0,
    "",
    " ",
    "x" * 70000,
    "\u0000",
    "\ud800",
    "\u202e\u0041",
    "../../etc/passwd",
    "<script>alert(1)</script>",
    # Dates at the ends of the range, and one that cannot exist (no wall clock decides these).
    "9999-12-31T23:59:59+14:00",
    "0001-01-01T00:00:00-23:59",
    "2026-02-30T25:61:61Z",
    "not a date",
    "v1.2.0",
    "1.2.0.dev0+local",
    "00000000-0000-0000-0000-000000000000",
    [],
    [None],
    ["x"] * 6000,
    {},
    {"$ne": 1},
]
RAW_HOSTILE = [
    b"",
    b"null",
    b"[]",
    b'"just a string"',
    b"{",
    b"\xff\xfe\x00{",
    b"\xef\xbb\xbf{}",
    b"[" * 50000 + b"]" * 50000,
    b'{"a":' * 50000 + b"1" + b"}" * 50000,
    b'{"run_id": NaN, "events": [Infinity]}',
    b'{"run_id": "x", "run_id": "y"}',
    b"\x00" * 100,
    b'{"events": [' + b'{"seq": 1},' * 20000 + b'{"seq": 1}]}',
]


# --- small helpers ------------------------------------------------------------------------
def mutate(value: Any, rng: random.Random, depth: int = 0) -> Any:
    """One structural mutation somewhere inside `value`."""
    if isinstance(value, dict) and value and depth < 4 and rng.random() < 0.7:
        key = rng.choice(list(value))
        choice = rng.random()
        out = dict(value)
        if choice < 0.15:
            del out[key]
        elif choice < 0.25:
            out[rng.choice(["extra", "__proto__", "signature", "seq", "kind"])] = rng.choice(HOSTILE_VALUES)
        else:
            out[key] = mutate(value[key], rng, depth + 1)
        return out
    if isinstance(value, list) and value and depth < 4 and rng.random() < 0.7:
        out = list(value)
        i = rng.randrange(len(out))
        choice = rng.random()
        if choice < 0.2:
            out.append(copy.deepcopy(out[i]))
        elif choice < 0.3:
            del out[i]
        else:
            out[i] = mutate(out[i], rng, depth + 1)
        return out
    return copy.deepcopy(rng.choice(HOSTILE_VALUES))


def byte_mutate(data: bytes, rng: random.Random) -> bytes:
    raw = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        if not raw:
            break
        i = rng.randrange(len(raw))
        if op < 0.4:
            raw[i] = rng.randrange(256)
        elif op < 0.6:
            del raw[i : i + rng.randint(1, 8)]
        elif op < 0.8:
            raw[i:i] = rng.choice([b"\\u0000", b"\\ud800", b"\xc3", b"{", b"]", b'"', b"\x00", b"1e999"])
        else:
            raw = raw[:i]
    return bytes(raw)


def dumps(value: Any) -> bytes:
    try:
        return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    except (ValueError, OverflowError):
        return json.dumps(value).encode()


def http(
    url: str, body: bytes | None = None, headers: dict[str, str] | None = None, method: str | None = None
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError as exc:
        return 0, str(exc).encode()


def outbox_pending(project: Any) -> int:
    from host_agent.outbox import Outbox

    return sum(len(run.pending) for run in Outbox(project.data_dir / "updates" / "agent" / "outbox").runs())


class Suite:
    def __init__(self, url: str, tmp: Path, rng: random.Random) -> None:
        from django.conf import settings
        from django.contrib.auth import get_user_model

        self.url = url
        self.tmp = tmp
        self.rng = rng
        self.secret = settings.OPENTRACE_AGENT_SECRET
        self.trigger_file = Path(settings.OPENTRACE_UPDATES_DIR) / "trigger"
        self.admin = get_user_model().objects.create_superuser("bench_admin", "bench@example.com", "x" * 20)
        self.password = "x" * 20

    # --- runs ------------------------------------------------------------------------
    def request_run(self, into: Path | None, version: str = "1.2.0") -> Any:

        self.finish_active()
        common.offer(version, heartbeat_to=self.url, secret=self.secret)
        run = common.request_install(self.admin)
        if into is not None:
            into.mkdir(parents=True, exist_ok=True)
            os.replace(self.trigger_file, into / "trigger")
        else:
            self.trigger_file.unlink(missing_ok=True)
        return run

    def finish_active(self) -> None:
        from updates.models import RunStatus, UpdateRun

        for run in UpdateRun.objects.filter(status__in=["requested", "running"]):
            if run.status == RunStatus.REQUESTED:
                run.mark_running()
            run.mark_finished(RunStatus.FAILED, error="closed by the fault suite")

    def events_of(self, run: Any) -> list[int]:
        from updates.models import UpdateEvent

        return list(UpdateEvent.objects.filter(run=run).order_by("seq").values_list("seq", flat=True))

    # --- 1. kills --------------------------------------------------------------------
    def kills(self) -> list[dict[str, Any]]:
        rows = []
        for boundary in BOUNDARIES:
            base = self.tmp / f"kill-{boundary}"
            project = common.make_project(base, start="1.1.5", releases=["1.2.0"])
            proxy = common.HealthProxy(self.url, project.data_dir / "served")
            try:
                run = self.request_run(project.updates)
                argv = common.agent_command(project, proxy.url)
                env = common.agent_env(self.secret)
                killed = subprocess.run(
                    argv,
                    cwd=project.checkout,
                    env={**env, "OPENTRACE_AGENT_CRASH_AT": boundary},
                    capture_output=True,
                    timeout=120,
                    check=False,
                )
                again = subprocess.run(
                    argv,
                    cwd=project.checkout,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=False,
                )
            finally:
                proxy.close()
            run.refresh_from_db()
            seqs = self.events_of(run)
            gaps = (max(seqs) - len(seqs)) if seqs else 1
            queued = outbox_pending(project)
            version = "1.2.0" if EXPECTED[boundary] == "succeeded" else "1.1.5"
            ok = (
                killed.returncode == -signal.SIGKILL
                and run.status == EXPECTED[boundary]
                and project.served() == version
                and project.head() == project.commits[version]
                and gaps == 0
                and queued == 0
            )
            rows.append(
                {
                    "boundary": boundary,
                    "killed": killed.returncode == -signal.SIGKILL,
                    "outcome": run.status,
                    "expected": EXPECTED[boundary],
                    "serves": project.served(),
                    "events": len(seqs),
                    "lost": gaps + queued,
                    "survived": ok,
                    "restart_exit": again.returncode,
                }
            )
            shutil.rmtree(base, ignore_errors=True)
        return rows

    # --- 2. outage -------------------------------------------------------------------
    def outage(self) -> dict[str, Any]:
        base = self.tmp / "outage"
        project = common.make_project(base, start="1.1.5", releases=["1.2.0"])
        proxy = common.HealthProxy(self.url, project.data_dir / "served")
        try:
            run = self.request_run(project.updates)
            argv = common.agent_command(project, proxy.url)
            env = common.agent_env(self.secret)
            proxy.api_down = True
            first = subprocess.run(
                argv, cwd=project.checkout, env=env, capture_output=True, timeout=120, check=False
            )
            queued_during = outbox_pending(project)
            stored_during = len(self.events_of(run))
            proxy.api_down = False
            second = subprocess.run(
                argv, cwd=project.checkout, env=env, capture_output=True, timeout=120, check=False
            )
        finally:
            proxy.close()
        run.refresh_from_db()
        seqs = self.events_of(run)
        lost = (max(seqs) - len(seqs) if seqs else 1) + outbox_pending(project)
        shutil.rmtree(base, ignore_errors=True)
        return {
            "first_exit": first.returncode,
            "second_exit": second.returncode,
            "stored_while_down": stored_during,
            "queued_while_down": queued_during,
            "stored_after": len(seqs),
            "outcome": run.status,
            "lost": lost,
        }

    # --- 3. concurrent clicks --------------------------------------------------------
    def login(self) -> urllib.request.OpenerDirector:
        jar = CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        with opener.open(self.url + "/admin/login/", timeout=30) as response:
            response.read()
        token = next(c.value for c in jar if c.name == "csrftoken")
        form = f"username=bench_admin&password={self.password}&csrfmiddlewaretoken={token}&next=/admin/"
        request = urllib.request.Request(
            self.url + "/admin/login/",
            data=form.encode(),
            headers={
                "Referer": self.url + "/admin/login/",
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        with opener.open(request, timeout=30) as response:
            response.read()
        opener.csrf = next(c.value for c in jar if c.name == "csrftoken")  # type: ignore[attr-defined]  # carried on the opener
        return opener

    def clicks(self, rounds: int, per_round: int = 20) -> dict[str, Any]:
        from updates.checking import run_check
        from updates.models import RegistryCheck, RegistryState, UpdateRun

        body = json.dumps(
            {"schema": 1, "project": "opentrace", "meta_version": 1, "releases": [{"version": "1.2.0"}]}
        ).encode()
        server, registry_url = _registry_server(body)
        from django.test.utils import override_settings

        with override_settings(OPENTRACE_REGISTRY_URL=registry_url):
            check = run_check(RegistryCheck.Trigger.MANUAL)
        server.shutdown()
        assert check.outcome == "ok", check.error
        digest = RegistryState.load().document_sha256
        sessions = [self.login() for _ in range(4)]
        statuses: Counter[int] = Counter()
        created_per_round = []
        for _ in range(rounds):
            self.finish_active()
            heartbeat = json.dumps(
                {"agent_id": "bench-host", "agent_version": "1", "deployed_version": "1.1.5", "busy": False}
            ).encode()
            http(
                self.url + "/api/updates/agent/heartbeat",
                heartbeat,
                common.signed_headers(self.secret, heartbeat),
            )
            before = UpdateRun.objects.count()
            shared_key = uuid.uuid4().hex
            barrier = threading.Barrier(per_round)

            def click(i: int, shared_key: str = shared_key, barrier: threading.Barrier = barrier) -> None:
                opener = sessions[i % len(sessions)]
                key = shared_key if i % 2 == 0 else uuid.uuid4().hex
                form = (
                    f"csrfmiddlewaretoken={opener.csrf}&idempotency_key={key}"  # type: ignore[attr-defined]  # set above
                    f"&version=1.2.0&document_sha256={digest}"
                ).encode()
                request = urllib.request.Request(
                    self.url + "/admin/updates/system/install/start/",
                    data=form,
                    headers={
                        "Referer": self.url + "/admin/updates/system/install/",
                        "Content-Type": "application/x-www-form-urlencoded",
                    },
                )
                barrier.wait(timeout=60)
                try:
                    with _no_redirect(opener).open(request, timeout=60) as response:
                        statuses[response.status] += 1
                except urllib.error.HTTPError as exc:
                    statuses[exc.code] += 1
                except OSError:
                    statuses[0] += 1

            threads = [threading.Thread(target=click, args=(i,)) for i in range(per_round)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
            created_per_round.append(UpdateRun.objects.count() - before)
        self.finish_active()
        return {
            "rounds": rounds,
            "clicks": rounds * per_round,
            "runs_created_per_round": created_per_round,
            "duplicated_runs": sum(max(0, n - 1) for n in created_per_round),
            "rounds_without_a_run": sum(1 for n in created_per_round if n == 0),
            "statuses": dict(statuses),
            "server_errors": sum(v for k, v in statuses.items() if k >= 500 or k == 0),
        }

    # --- 4a. agent API ---------------------------------------------------------------
    def agent_api(self, count: int) -> dict[str, Any]:
        from updates.models import UpdateRun

        run = self.request_run(None)
        run.mark_running()
        events_url = self.url + "/api/updates/agent/events"
        beat_url = self.url + "/api/updates/agent/heartbeat"
        valid_event = {
            "run_id": str(run.pk),
            "events": [
                {
                    "seq": 1,
                    "kind": "step",
                    "step": "build",
                    "state": "started",
                    "message": "m",
                    "at": iso_in(),
                },
                {"seq": 2, "kind": "log", "step": "build", "lines": ["a", "b"], "at": iso_in()},
            ],
        }
        valid_beat = {
            "agent_id": "h",
            "agent_version": "1",
            "deployed_version": "1.1.5",
            "busy": True,
            "run_id": str(run.pk),
            "at": iso_in(),
        }
        cases: list[tuple[str, str, bytes, dict[str, str], str]] = []  # (kind, url, body, headers, method)
        for raw in RAW_HOSTILE:
            for url in (events_url, beat_url):
                cases.append(("raw", url, raw, common.signed_headers(self.secret, raw), "POST"))
        body = dumps(valid_event)
        stamp = str(int(time.time()))
        for headers in (
            {},
            {"X-OpenTrace-Timestamp": stamp},
            {"X-OpenTrace-Timestamp": stamp, "X-OpenTrace-Signature": "sha256=" + "0" * 64},
            {
                "X-OpenTrace-Timestamp": "1",
                "X-OpenTrace-Signature": common.signed_headers(self.secret, body)["X-OpenTrace-Signature"],
            },
            {"X-OpenTrace-Timestamp": "9" * 40, "X-OpenTrace-Signature": "sha256=zz"},
            {"X-OpenTrace-Timestamp": "-5", "X-OpenTrace-Signature": "md5=abc"},
            {"X-OpenTrace-Timestamp": stamp, "X-OpenTrace-Signature": "sha256=" + "A" * 64},
            {**common.signed_headers(self.secret, body), "Content-Type": "text/plain"},
        ):
            cases.append(("auth", events_url, body, headers, "POST"))
        for method in ("GET", "PUT", "DELETE", "PATCH", "OPTIONS"):
            cases.append(("method", events_url, body, common.signed_headers(self.secret, body), method))
        big = dumps({**valid_event, "pad": "x" * (1024 * 1024 + 10)})
        cases.append(("size", events_url, big, common.signed_headers(self.secret, big), "POST"))
        while len(cases) < count:
            url, base = (events_url, valid_event) if self.rng.random() < 0.75 else (beat_url, valid_beat)
            value = mutate(base, self.rng)
            data = dumps(value)
            if self.rng.random() < 0.25:
                data = byte_mutate(data, self.rng)
            cases.append(("mutated", url, data, common.signed_headers(self.secret, data), "POST"))

        statuses: Counter[int] = Counter()
        crashes: list[str] = []
        lock = threading.Lock()

        def send(chunk: list[tuple[str, str, bytes, dict[str, str], str]]) -> None:
            for kind, url, data, headers, method in chunk:
                status, answer = http(
                    url, data if method in ("POST", "PUT", "PATCH") else None, headers, method
                )
                with lock:
                    statuses[status] += 1
                    if status >= 500 or status == 0:
                        crashes.append(
                            f"{kind} {url.rsplit('/', 1)[1]} {status}: {data[:120]!r} → {answer[:200]!r}"
                        )

        for start in range(0, len(cases), 100):
            batch = cases[start : start + 100]
            threads = [threading.Thread(target=send, args=(batch[i::4],)) for i in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            run.refresh_from_db()
            if run.is_terminal:  # a mutated `run` event may legally end it; keep fuzzing a live run
                run = self.request_run(None)
                run.mark_running()
                valid_event["run_id"] = str(run.pk)
        self.finish_active()
        return {
            "tried": len(cases),
            "statuses": dict(sorted(statuses.items())),
            "crashes": len(crashes),
            "examples": distinct(crashes),
            "run_rows": UpdateRun.objects.count(),
        }

    # --- 4b. trigger readers ---------------------------------------------------------
    def triggers(self, count: int) -> dict[str, Any]:
        from contract.signing import trigger_signature
        from host_agent.errors import TriggerRejected
        from host_agent.trigger import TriggerSwapped, read_trigger, run_id_hint
        from updates import trigger as backend_trigger

        folder = self.tmp / "triggers"
        folder.mkdir()
        path = folder / "trigger"
        fields = {
            "run_id": str(uuid.uuid4()),
            "target_version": "1.2.0",
            "git_tag": "v1.2.0",
            "git_commit": None,
            "requested_by": "bench_admin",
            "requested_at": iso_in(),
            "manifest": base64.b64encode(common.manifest("1.2.0")).decode(),
        }

        def signed(values: Any) -> bytes:
            if isinstance(values, dict):
                values = {k: v for k, v in values.items() if k != "signature"}
                with contextlib.suppress(TypeError, ValueError):  # unserialisable: left unsigned
                    values["signature"] = trigger_signature(self.secret, values)
            return dumps(values)

        cases: list[tuple[str, Any]] = [("valid", signed(fields))]
        cases += [("raw", raw) for raw in RAW_HOSTILE]
        cases += [("oversize", b" " * (512 * 1024 + 1) + signed(fields))]
        # json.dumps escapes it: the file is plain ASCII, the parsed field holds a lone surrogate.
        cases.append(
            (
                "lone surrogate",
                json.dumps({**fields, "requested_by": "\ud800", "signature": "0" * 64}).encode(),
            )
        )
        for manifest in (
            b"[" * 50000,
            b"null",
            b"{}",
            b'{"signed": "!!", "signatures": []}',
            b'{"signed": "e30=", "signatures": []}',
            b'{"signed": "W10=", "signatures": 5}',
            b'{"releases": 5, "project": "opentrace"}',
            b'{"projects": {"opentrace": 7}}',
            b'{"version": {"a": 1}}',
            b"\xff\xfe",
        ):
            cases.append(("manifest", signed({**fields, "manifest": base64.b64encode(manifest).decode()})))
        for special in ("symlink", "fifo", "directory", "hardlink", "empty"):
            cases.append((special, None))
        while len(cases) < count:
            value = mutate(fields, self.rng)
            data = signed(value) if self.rng.random() < 0.8 else dumps(value)
            if self.rng.random() < 0.2:
                data = byte_mutate(data, self.rng)
            cases.append(("mutated", data))

        outcomes: Counter[str] = Counter()
        crashes: list[str] = []
        for kind, data in cases:
            _clear(folder)
            if kind == "symlink":
                (folder / "target").write_bytes(signed(fields))
                path.symlink_to(folder / "target")
            elif kind == "fifo":
                os.mkfifo(path)
            elif kind == "directory":
                path.mkdir()
            elif kind == "hardlink":
                (folder / "target").write_bytes(signed(fields))
                os.link(folder / "target", path)
            elif kind == "empty":
                path.write_bytes(b"")
            else:
                path.write_bytes(data)
            for reader in ("agent", "agent hint", "backend"):

                def read(reader: str = reader) -> object:
                    if reader == "agent":
                        return read_trigger(
                            path,
                            secret=self.secret,
                            registry_keys={},
                            running_version="1.1.5",
                            now=datetime.now(UTC),
                        )
                    if reader == "agent hint":
                        return run_id_hint(path)
                    return backend_trigger.read(path)

                done, value, exc = _with_timeout(read, path, 5.0)
                if not done:
                    outcomes[f"{reader}: HANG"] += 1
                    crashes.append(f"{reader} on {kind}: hung (> 5 s) opening the file")
                elif exc is None:
                    if reader == "agent":
                        outcomes["agent: accepted"] += 1
                elif isinstance(exc, (TriggerRejected, TriggerSwapped, FileNotFoundError)):
                    outcomes[f"{reader}: {type(exc).__name__}"] += 1
                else:  # the count this section exists for
                    outcomes[f"{reader}: CRASH {type(exc).__name__}"] += 1
                    crashes.append(
                        f"{reader} on {kind}: {type(exc).__name__}: {str(exc)[:120]} ({_where(exc)})"
                    )
        _clear(folder)
        agent_runs = self._agent_on_hostile_triggers()
        return {
            "tried": len(cases),
            "outcomes": dict(sorted(outcomes.items())),
            "crashes": len(crashes),
            "examples": distinct(crashes),
            "agent_once": agent_runs,
            "agent_once_crashes": sum(1 for r in agent_runs if r["crash"]),
        }

    def _agent_on_hostile_triggers(self) -> list[dict[str, Any]]:
        """The real `once` on a few hostile triggers: exit 2, moved to rejected/, no traceback."""
        from contract.signing import trigger_signature

        base = self.tmp / "once-hostile"
        project = common.make_project(base, start="1.1.5", releases=["1.2.0"])
        rows = []
        fields = {
            "run_id": str(uuid.uuid4()),
            "target_version": "1.2.0",
            "git_tag": "v1.2.0",
            "git_commit": None,
            "requested_by": "bench_admin",
            "requested_at": iso_in(),
            "manifest": base64.b64encode(common.manifest("1.2.0")).decode(),
        }
        samples = {
            "not JSON": b"{",
            "lone surrogate": json.dumps(
                {**fields, "requested_by": "\ud800", "signature": "0" * 64}
            ).encode(),
            "deeply nested": b"[" * 50000 + b"]" * 50000,
            "bad signature": dumps({**fields, "signature": "0" * 64}),
            "unknown field": dumps(
                {**fields, "extra": 1, "signature": trigger_signature(self.secret, {**fields, "extra": 1})}
            ),
            "manifest without the target": dumps(
                {
                    **fields,
                    "manifest": base64.b64encode(common.manifest("9.9.9")).decode(),
                    "signature": trigger_signature(
                        self.secret,
                        {**fields, "manifest": base64.b64encode(common.manifest("9.9.9")).decode()},
                    ),
                }
            ),
            "nested manifest": dumps(
                {
                    **fields,
                    "manifest": base64.b64encode(b"[" * 50000).decode(),
                    "signature": trigger_signature(
                        self.secret, {**fields, "manifest": base64.b64encode(b"[" * 50000).decode()}
                    ),
                }
            ),
        }
        for name, data in samples.items():
            project.updates.mkdir(parents=True, exist_ok=True)
            (project.updates / "trigger").write_bytes(data)
            done = subprocess.run(
                common.agent_command(project, "http://127.0.0.1:9"),
                cwd=project.checkout,
                env=common.agent_env(self.secret),
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            left = (project.updates / "trigger").exists()
            crash = "Traceback" in done.stderr or done.returncode not in (2,)
            rows.append(
                {
                    "case": name,
                    "exit": done.returncode,
                    "trigger_left": left,
                    "crash": crash,
                    "stderr_tail": done.stderr.strip().splitlines()[-1][:200]
                    if crash and done.stderr.strip()
                    else "",
                }
            )
            (project.updates / "trigger").unlink(missing_ok=True)
        shutil.rmtree(base, ignore_errors=True)
        return rows

    # --- 4c. registry parsers --------------------------------------------------------
    def documents(self, count: int) -> dict[str, Any]:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        from contract.registry import RegistryError, parse_document
        from contract.signing import trigger_signature
        from host_agent.errors import TriggerRejected
        from host_agent.trigger import parse_trigger

        def signed_trigger(manifest: bytes) -> bytes:
            """The body as a trigger's manifest: the agent reads it through `parse_trigger`."""
            fields = {
                "run_id": str(uuid.uuid4()),
                "target_version": "1.2.0",
                "git_tag": "v1.2.0",
                "git_commit": "a" * 40,
                "requested_by": "bench_admin",
                "requested_at": "2026-11-27T12:00:00Z",
                "manifest": base64.b64encode(manifest).decode(),
            }
            return dumps({**fields, "signature": trigger_signature(self.secret, fields)})

        key = Ed25519PrivateKey.generate()
        public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        keys = {"k1": public}
        full = {
            "schema": 1,
            "project": "opentrace",
            "meta_version": 3,
            "expires": iso_in(timedelta(days=365)),
            "releases": [
                {
                    "version": "1.2.0",
                    "channel": "stable",
                    "published_at": iso_in(-timedelta(days=7)),
                    "notes": "**notes**",
                    "severity": "security",
                    "git_tag": "v1.2.0",
                    "git_commit": "a" * 40,
                    "min_upgrade_from": "1.1.0",
                }
            ],
        }
        shapes = [
            full,
            {"version": "1.2.0", "changelog": "x"},
            {"opentrace": {"version": "1.2.0"}},
            {"projects": {"opentrace": {"version": "1.2.0"}}},
        ]

        def envelope(inner: bytes, sign: bool = True) -> bytes:
            sig = key.sign(inner) if sign else b"\x00" * 64
            return dumps(
                {
                    "signed": base64.b64encode(inner).decode(),
                    "signatures": [{"keyid": "k1", "sig": base64.b64encode(sig).decode()}],
                }
            )

        cases: list[tuple[str, bytes, bool]] = []  # (kind, body, keys pinned)
        cases += [("raw", raw, pinned) for raw in RAW_HOSTILE for pinned in (False, True)]
        cases.append(("oversize", b" " * (256 * 1024 + 1) + dumps(full), False))
        cases.append(("deep signed", envelope(b"[" * 50000 + b"]" * 50000), True))
        cases.append(("unsigned envelope of junk", envelope(b"\xff{", sign=False), False))
        while len(cases) < count:
            shape = self.rng.choice(shapes)
            value = mutate(shape, self.rng)
            inner = dumps(value)
            if self.rng.random() < 0.2:
                inner = byte_mutate(inner, self.rng)
            if self.rng.random() < 0.35:
                signed_body = envelope(inner, sign=self.rng.random() < 0.8)
                if self.rng.random() < 0.3:
                    signed_body = dumps(mutate(json.loads(signed_body), self.rng))
                cases.append(("envelope", signed_body, self.rng.random() < 0.7))
            else:
                cases.append(("mutated", inner, False))

        outcomes: Counter[str] = Counter()
        crashes: list[str] = []
        caught: list[str] = []
        now = datetime.now(UTC)
        for kind, body, pinned in cases:
            use = keys if pinned else {}
            try:
                parse_document(body, keys=use, now=now, highest_meta_version=2)
                outcomes["backend: accepted"] += 1
            except RegistryError as exc:
                outcomes["backend: RegistryError"] += 1
                if "could not be read (" in str(exc):
                    cause = exc.__cause__
                    caught.append(
                        f"{kind}: {exc} ← {type(cause).__name__}: {str(cause)[:90]} ({_where(cause)})"
                    )
            except Exception as exc:
                outcomes[f"backend: CRASH {type(exc).__name__}"] += 1
                crashes.append(f"backend on {kind}: {type(exc).__name__}: {str(exc)[:120]} ({_where(exc)})")
            try:
                parse_trigger(
                    signed_trigger(body),
                    secret=self.secret,
                    registry_keys=use,
                    running_version="1.1.5",
                    now=now,
                )
                outcomes["agent: accepted"] += 1
            except TriggerRejected as exc:
                outcomes[f"agent: {type(exc).__name__}"] += 1
            except Exception as exc:
                outcomes[f"agent: CRASH {type(exc).__name__}"] += 1
                crashes.append(
                    f"agent manifest on {kind}: {type(exc).__name__}: {str(exc)[:120]} ({_where(exc)})"
                )
        return {
            "tried": len(cases),
            "outcomes": dict(sorted(outcomes.items())),
            "crashes": len(crashes),
            "examples": distinct(crashes),
            "caught_by_catch_all": len(caught),
            "caught_examples": sorted(set(caught))[:6],
        }


def distinct(crashes: list[str]) -> list[str]:
    """One line per kind of crash (reader, exception, where), with how often it happened."""
    kinds: Counter[str] = Counter()
    for text in crashes:
        reader = text.split(" on ", 1)[0]
        rest = text.split(": ", 1)[1] if ": " in text else text
        error = rest.split(":", 1)[0]
        where = text.rsplit("(", 1)[-1].rstrip(")") if text.endswith(")") else ""
        kinds[f"{reader}: {error}" + (f" at {where}" if where else "")] += 1
    return [f"{kind} (x{n})" for kind, n in sorted(kinds.items())]


def _where(exc: BaseException | None) -> str:
    if exc is None or exc.__traceback__ is None:
        return "?"
    frame = traceback.extract_tb(exc.__traceback__)[-1]
    for entry in reversed(traceback.extract_tb(exc.__traceback__)):
        if "/work/" in entry.filename and ".venv" not in entry.filename:
            frame = entry
            break
    return f"{Path(frame.filename).name}:{frame.lineno}"


def _with_timeout(function: Any, path: Path, seconds: float) -> tuple[bool, object, BaseException | None]:
    """Call `function` in a thread; (finished, value, exception). A reader blocked opening a
    FIFO is released by opening the FIFO's other end, so the suite itself never hangs."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = function()
        except BaseException as exc:  # handed back to the caller to classify
            box["exc"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        with contextlib.suppress(OSError):
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(5)
        return False, None, None
    return True, box.get("value"), box.get("exc")


def _clear(folder: Path) -> None:
    for item in folder.iterdir():
        if item.is_dir() and not item.is_symlink():
            shutil.rmtree(item)
        else:
            item.unlink()


def _no_redirect(opener: urllib.request.OpenerDirector) -> urllib.request.OpenerDirector:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    handlers = [h for h in opener.handlers if not isinstance(h, urllib.request.HTTPRedirectHandler)]
    fresh = urllib.request.build_opener(
        NoRedirect, *[h for h in handlers if isinstance(h, urllib.request.HTTPCookieProcessor)]
    )
    return fresh


def _registry_server(body: bytes) -> tuple[Any, str]:
    from testing.registry_server import respond, start_registry_server

    registry = start_registry_server()
    url = registry.serve("/version.json", respond(body, headers={"Content-Type": "application/json"}))
    return registry.server, url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--api", type=int, default=600, help="requests against the agent API")
    parser.add_argument("--triggers", type=int, default=400)
    parser.add_argument("--documents", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of 20 concurrent install clicks")
    parser.add_argument(
        "--skip", default="", help="comma-separated parts to skip: kills,outage,clicks,api,triggers,documents"
    )
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    started = time.monotonic()
    at_start = common.machine()
    sys.setrecursionlimit(1000)  # the interpreter's default, as in the services
    rng = random.Random(args.seed)
    report: dict[str, Any] = {"seed": args.seed}
    with common.tempdir("faults") as tmp:
        common.recreate_database(DB)
        # The admin pages need collected static files when DEBUG is off.
        env = common.backend_env(
            tmp / "backend-data",
            DB,
            DJANGO_SETTINGS_MODULE="bench.settings",
            BENCH_STATIC_ROOT=str(tmp / "static"),
        )
        common.manage(env, "migrate", "--noinput")
        common.manage(env, "collectstatic", "--noinput")
        common.setup_django(env)
        with common.gunicorn(env, workers=4) as url:
            suite = Suite(url, tmp, rng)
            parts = [
                ("kills", suite.kills),
                ("outage", suite.outage),
                ("clicks", lambda: suite.clicks(args.rounds)),
                ("api", lambda: suite.agent_api(args.api)),
                ("triggers", lambda: suite.triggers(args.triggers)),
                ("documents", lambda: suite.documents(args.documents)),
            ]
            for name, part in parts:
                if name in skip:
                    continue
                t0 = time.monotonic()
                report[name] = part()
                print(f"{name}: done in {time.monotonic() - t0:.1f} s", flush=True)

    failures = []
    rows = []
    if "kills" in report:
        kills = report["kills"]
        print(
            common.table(
                [
                    [
                        k["boundary"],
                        k["outcome"],
                        k["expected"],
                        k["serves"],
                        k["events"],
                        k["lost"],
                        "yes" if k["survived"] else "NO",
                    ]
                    for k in kills
                ],
                ["killed at", "outcome", "expected", "serves", "events", "lost", "survived"],
            )
        )
        survived = sum(k["survived"] for k in kills)
        lost = sum(k["lost"] for k in kills)
        rows.append(["kills survived at step boundaries", f"{survived}/{len(kills)}", "all"])
        rows.append(["events lost after kills", lost, "0"])
        if survived != len(kills):
            failures.append("a kill was not survived")
        if lost:
            failures.append("events lost after kills")
    if "outage" in report:
        o = report["outage"]
        rows.append(
            [
                f"events lost across a backend outage ({o['stored_after']} events, "
                f"{o['queued_while_down']} queued)",
                o["lost"],
                "0",
            ]
        )
        if o["lost"] or o["outcome"] != "succeeded":
            failures.append("outage")
    if "clicks" in report:
        c = report["clicks"]
        rows.append(
            [
                f"duplicated runs ({c['clicks']} concurrent clicks in {c['rounds']} rounds)",
                c["duplicated_runs"],
                "0",
            ]
        )
        rows.append(["install clicks answered 5xx / dropped", c["server_errors"], "0"])
        if c["duplicated_runs"] or c["server_errors"] or c["rounds_without_a_run"]:
            failures.append("clicks")
    if "api" in report:
        a = report["api"]
        rows.append([f"agent API: 500/503/dropped of {a['tried']} hostile requests", a["crashes"], "0"])
        if a["crashes"]:
            failures.append("agent API")
    if "triggers" in report:
        t = report["triggers"]
        rows.append(
            [f"trigger readers: crashes on {t['tried']} hostile files (x3 readers)", t["crashes"], "0"]
        )
        rows.append(
            [
                f"`host_agent once` on {len(t['agent_once'])} hostile triggers: crash or exit != 2",
                t["agent_once_crashes"],
                "0",
            ]
        )
        if t["crashes"] or t["agent_once_crashes"]:
            failures.append("trigger readers")
    if "documents" in report:
        d = report["documents"]
        rows.append(
            [f"registry parsers: crashes on {d['tried']} hostile documents (x2 parsers)", d["crashes"], "0"]
        )
        rows.append(
            [
                "  backend parser: unexpected errors caught by its catch-all",
                d["caught_by_catch_all"],
                "(info)",
            ]
        )
        if d["crashes"]:
            failures.append("registry parsers")
    print()
    print(common.table(rows, ["fault injection", "count", "must be"]))
    for name in ("api", "triggers", "documents"):
        for example in report.get(name, {}).get("examples", []):
            print(f"  {name}: {example}")
    for example in report.get("documents", {}).get("caught_examples", []):
        print(f"  caught: {example}")
    for row in report.get("triggers", {}).get("agent_once", []):
        if row["crash"]:
            print(f"  once: {row}")
    report["failures"] = failures
    print("\nFAILED: " + ", ".join(failures) if failures else "\nall must-be-zero counts are 0")
    common.write_results("faults", {"_machine_at_start": at_start, **report}, started)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
