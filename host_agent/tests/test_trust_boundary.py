"""Issue 16: a compromised web app cannot reach root through the agent (SPEC §5, docs/security.md).

The real agent (`python -m host_agent once`) runs as root, with the unit's umask, against a
data dir owned by the app's uid 10001; every attacker step runs as that uid in a subprocess
that dropped its privileges. After each attack: no file outside the data and state dirs has
changed (the host's files, the upstream repository) and the checkout is at the commit it
started from or at the offered release's.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from testing.agent import agent_argv, agent_env, trigger_fields
from testing.helpers import git

APP_UID = 10001
UNIT_UMASK = 0o027

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the agent must run as root, the attacker as 10001")


def as_app(script: str, *args: str) -> None:
    """One attacker step: Python run as uid 10001 (no supplementary groups)."""
    done = subprocess.run(
        ["/usr/bin/python3", "-c", textwrap.dedent(script), *args],
        user=APP_UID,
        group=APP_UID,
        extra_groups=[],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"the attacker's step failed: {done.stderr}"


def snapshot(root: Path, skip: tuple[Path, ...]) -> dict[str, str]:
    """Every file and link under `root` but the skipped trees, with a hash of what it holds."""
    found: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = [d for d in dirs if not any((here / d) == s or s in (here / d).parents for s in skip)]
        for name in files + [d for d in dirs if (here / d).is_symlink()]:
            path = here / name
            if path.is_symlink():
                found[str(path)] = "link:" + os.readlink(path)
            else:
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


class Host:
    """The host around the install: root's files, which nothing the app does may change."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "host"
        self.dir.mkdir(mode=0o700)
        self.bashrc = self.dir / ".bashrc"
        self.bashrc.write_text("# root's shell startup file\n")
        self.secret = self.dir / "shadow"
        self.secret.write_text("root:$6$secret:19000::::::\n")
        self.secret.chmod(0o600)
        self.empty = self.dir / "drop-here"
        self.empty.mkdir()
        # The app may see the host folder's contents' names (to aim its links), not read them.
        self.dir.chmod(0o711)


class Scene:
    """The install under attack, and the one way the tests run the agent."""

    def __init__(self, project, backend, root: Path) -> None:
        self.project, self.backend, self.root = project, backend, root
        self.state_dir = root / "agent-state"
        self.state = str(self.state_dir)
        self.host = Host(root)

    def agent(self, **env: str) -> subprocess.CompletedProcess:
        """`python -m host_agent once` as root, with the unit's umask and its own state dir.

        Around it, everything outside the data and state dirs (and the checkout, whose HEAD
        is checked instead) is compared before and after.
        """
        project, skip = self.project, (self.project.data_dir, self.state_dir, self.project.checkout)
        before = snapshot(self.root, skip)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "host_agent",
                *agent_argv(project, self.backend),
                "--state-dir",
                str(self.state_dir),
            ],
            cwd=project.checkout,
            # A generous health check: these tests run many agents on a loaded machine.
            env=agent_env(**{"OPENTRACE_AGENT_HEALTHCHECK_TIMEOUT": "30", **env}),
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
            preexec_fn=lambda: os.umask(UNIT_UMASK),
        )
        assert snapshot(self.root, skip) == before, "a file outside the data and state dirs changed"
        offered = [c for v, c in project.commits.items() if v != "1.1.5"]
        assert project.head() in (project.commits["1.1.5"], *offered), "an unoffered commit is checked out"
        return done


@pytest.fixture
def scene(project, backend, tmp_path):
    """The project as a compose install has it: the data dir the app's, the agent root."""
    opened = []
    for folder in [tmp_path, *tmp_path.parents]:
        if folder == Path("/"):
            break
        mode = folder.stat().st_mode & 0o7777
        if mode & 0o001 == 0:
            opened.append((folder, mode))
            folder.chmod(mode | 0o001)  # the app's uid may pass through (not list) the test's tree
    made = Scene(project, backend, tmp_path)
    project.updates.mkdir(exist_ok=True)
    subprocess.run(["chown", "-R", f"{APP_UID}:{APP_UID}", str(project.data_dir)], check=True)
    yield made
    # Only this test's own folder gets its mode back: the ancestors (pytest's base temp,
    # one per worker and one per run) are shared by the tests on the other xdist workers,
    # whose attacker steps must keep passing through them (search only, never listing).
    for folder, mode in opened:
        if folder == tmp_path:
            folder.chmod(mode)


def plant_trigger(project, fields: dict) -> str:
    """The app writes a trigger (it holds the agent secret, so the HMAC is valid)."""
    as_app(
        """
        import os, sys
        updates = sys.argv[1]
        with open(os.path.join(updates, ".t"), "w") as handle:
            handle.write(sys.argv[2])
        os.replace(os.path.join(updates, ".t"), os.path.join(updates, "trigger"))
        """,
        str(project.updates),
        json.dumps(fields),
    )
    project.last_manifest = base64.b64decode(fields["manifest"])
    return fields["run_id"]


def unreviewed_commit(project) -> str:
    """A commit on a branch nobody released, that still says VERSION 1.1.5."""
    git(project.upstream, "checkout", "-q", "-b", "evil", project.commits["1.1.5"])
    (project.upstream / "backdoor.py").write_text("print('pwned')\n")
    git(project.upstream, "add", "-A")
    git(project.upstream, "commit", "-qm", "unreviewed")
    commit = git(project.upstream, "rev-parse", "HEAD").strip()
    git(project.upstream, "checkout", "-q", "main")
    git(project.checkout, "fetch", "-q", "origin", "evil")
    return commit


# --- the state dir and the old location ---------------------------------------------------------


def test_a_renamed_and_replaced_legacy_state_dir_is_neither_migrated_nor_followed(scene):
    project, backend, state_dir, host = scene.project, scene.backend, scene.state_dir, scene.host
    evil = unreviewed_commit(project)
    legacy = project.updates / "agent"
    legacy.mkdir(mode=0o700)  # the old agent's, root-owned
    stem = f"{'0' * 20}-{trigger_fields()['run_id']}"
    as_app(
        """
        import json, os, sys
        legacy, bashrc, shadow, evil, stem = sys.argv[1:]
        os.rename(legacy, legacy + ".aside")  # the owner of updates/ may rename root's folder
        os.makedirs(os.path.join(legacy, "outbox", "dead"))
        os.symlink(bashrc, os.path.join(legacy, "outbox", "dead", stem + ".jsonl"))
        os.symlink(shadow, os.path.join(legacy, "outbox", stem + ".jsonl"))
        os.symlink(shadow, os.path.join(legacy, "run.lock"))
        journal = {"run_id": "6f1d2c3b-4a59-4e8f-9d0c-1b2a3c4d5e6f", "target_version": "1.2.0",
                   "git_tag": "v1.2.0", "git_commit": None, "from_version": "1.1.5",
                   "from_commit": evil, "from_branch": None, "started_at": "2026-01-01T00:00:00",
                   "step": "healthcheck", "steps_done": ["preflight"], "deploy_started": True}
        with open(os.path.join(legacy, "journal.json"), "w") as handle:
            json.dump(journal, handle)
        """,
        str(legacy),
        str(host.bashrc),
        str(host.secret),
        evil,
        stem,
    )
    run_id = plant_trigger(project, trigger_fields("1.2.0"))

    done = scene.agent()

    assert done.returncode == 0, done.stderr
    assert "not migrating" in done.stderr
    assert backend.final_state(run_id) == "succeeded"
    assert project.head() == project.commits["1.2.0"]
    assert not (state_dir / "journal.json").exists()
    assert backend.final_state("6f1d2c3b-4a59-4e8f-9d0c-1b2a3c4d5e6f") is None


def test_a_legacy_state_dir_of_the_agents_own_is_migrated_once(scene):
    project, backend, state_dir = scene.project, scene.backend, scene.state_dir
    legacy = project.updates / "agent"
    (legacy / "outbox").mkdir(parents=True, mode=0o700)
    os.chown(legacy, 0, 0)
    legacy.chmod(0o700)
    old_run = "0c4e7a52-1111-4d1b-8e2a-5f6a7b8c9d0e"
    line = {
        "seq": 1,
        "kind": "run",
        "state": "failed",
        "message": "from before",
        "at": "2026-01-01T00:00:00Z",
    }
    (legacy / "outbox" / f"{'1' * 20}-{old_run}.jsonl").write_text(json.dumps(line) + "\n")

    done = scene.agent()

    assert done.returncode == 0, done.stderr
    assert backend.seqs(old_run) == [1]  # delivered from its new place
    assert (state_dir / "legacy-migrated").exists()
    assert (legacy / "outbox").exists()  # nothing moved or deleted in the data dir


# --- links planted in every folder the agent touches in the data dir ---------------------------


@pytest.mark.parametrize("folder", ["processing", "done", "rejected"])
def test_the_old_claim_folders_swapped_for_links_receive_nothing(scene, folder):
    project, backend, state_dir, host = scene.project, scene.backend, scene.state_dir, scene.host
    as_app(
        "import os, sys; os.symlink(sys.argv[1], sys.argv[2])",
        str(host.empty),
        str(project.updates / folder),
    )
    ok = plant_trigger(project, trigger_fields("1.2.0"))
    assert scene.agent().returncode == 0
    assert backend.final_state(ok) == "succeeded"
    bad = plant_trigger(project, {**trigger_fields("1.3.0"), "signature": "0" * 64})

    assert scene.agent().returncode == 2

    assert backend.final_state(bad) == "failed"
    assert list(host.empty.iterdir()) == []
    assert sorted((state_dir / "rejected").glob("*.reason"))


@pytest.mark.parametrize("target", ["bashrc", "shadow", "folder"])
def test_a_trigger_that_links_to_a_host_file_is_rejected_and_the_file_untouched(scene, target):
    project, _backend, state_dir, host = scene.project, scene.backend, scene.state_dir, scene.host
    aim = {"bashrc": host.bashrc, "shadow": host.secret, "folder": host.empty}[target]
    as_app("import os, sys; os.symlink(sys.argv[1], sys.argv[2])", str(aim), str(project.updates / "trigger"))

    done = scene.agent()

    assert done.returncode == 2, done.stderr
    assert "symbolic link" in sorted((state_dir / "rejected").glob("*.reason"))[-1].read_text()
    assert not os.path.lexists(project.updates / "trigger")  # the link itself, unlinked
    assert aim.exists()


def test_the_agent_creates_nothing_in_the_updates_folder(scene):
    project, backend, state_dir = scene.project, scene.backend, scene.state_dir
    run_id = plant_trigger(project, trigger_fields("1.2.0"))

    assert scene.agent().returncode == 0

    assert backend.final_state(run_id) == "succeeded"
    assert list(project.updates.iterdir()) == []
    assert (state_dir / "done" / f"{run_id}.json").exists()
    assert os.stat(state_dir).st_mode & 0o777 == 0o700


def test_a_replayed_trigger_runs_at_most_once(scene):
    project, _backend, state_dir = scene.project, scene.backend, scene.state_dir
    fields = trigger_fields("1.2.0")
    plant_trigger(project, fields)
    assert scene.agent().returncode == 0
    git(project.checkout, "checkout", "-q", project.commits["1.1.5"])
    (project.data_dir / "served").write_text("1.1.5\n")

    plant_trigger(project, fields)  # the same file again
    done = scene.agent()

    assert done.returncode == 2
    assert "already used" in sorted((state_dir / "rejected").glob("*.reason"))[-1].read_text()
    assert project.head() == project.commits["1.1.5"]


# --- what is read back ---------------------------------------------------------------------------


def test_a_journal_that_is_not_the_agents_record_is_refused_and_nothing_is_checked_out(scene):
    project, _backend, state_dir = scene.project, scene.backend, scene.state_dir
    evil = unreviewed_commit(project)
    state_dir.mkdir(mode=0o700)
    forged = {
        "run_id": "not-a-uuid",
        "target_version": "1.2.0",
        "git_tag": "v1.2.0",
        "git_commit": None,
        "from_version": "1.1.5",
        "from_commit": evil,
        "from_branch": "--orphan",
        "started_at": "x",
        "step": "rm -rf",
        "deploy_started": True,
    }
    (state_dir / "journal.json").write_text(json.dumps(forged))

    done = scene.agent()

    assert done.returncode == 0, done.stderr
    assert "refusing" in done.stderr
    assert project.head() == project.commits["1.1.5"]


def test_a_rollback_after_a_crash_goes_only_to_a_commit_of_the_release_it_started_from(scene):
    project, backend, state_dir = scene.project, scene.backend, scene.state_dir
    state_dir.mkdir(mode=0o700)
    record = {
        "run_id": "7d3c2b1a-0000-4000-8000-000000000001",
        "target_version": "1.2.0",
        "git_tag": "v1.2.0",
        "git_commit": None,
        "from_version": "1.1.5",
        "from_commit": project.commits["1.2.0"],  # well-formed, but not what 1.1.5 is
        "from_branch": None,
        "started_at": "2026-01-01T00:00:00",
        "step": "healthcheck",
        "steps_done": ["preflight", "backup", "fetch", "build", "deploy", "migrate"],
        "deploy_started": True,
        "migrate_started": False,
    }
    (state_dir / "journal.json").write_text(json.dumps(record))

    done = scene.agent()

    assert done.returncode == 1, done.stderr
    assert project.head() == project.commits["1.1.5"]
    assert "not recovered" in backend.run_events(record["run_id"])[-1]["message"]


# --- the registry ---------------------------------------------------------------------------------


def _document(releases: list[dict], meta_version: int, *, expires: bool = True) -> bytes:
    document: dict = {"schema": 1, "project": "opentrace", "meta_version": meta_version, "releases": releases}
    if expires:
        document["expires"] = (datetime.now(UTC) + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps(document).encode()


@pytest.fixture
def signer():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def envelope(inner: bytes) -> bytes:
        sig = base64.b64encode(key.sign(inner)).decode()
        return json.dumps(
            {"signed": base64.b64encode(inner).decode(), "signatures": [{"keyid": "k1", "sig": sig}]}
        ).encode()

    return envelope, f"k1:{base64.b64encode(public).decode()}"


def test_a_replayed_older_signed_document_cannot_bring_back_a_withdrawn_release(scene, signer):
    project, backend, _state_dir = scene.project, scene.backend, scene.state_dir
    envelope, pinned = signer
    project.add_release("1.3.0")
    git(project.checkout, "fetch", "-q", "origin", "--tags")
    old = envelope(_document([{"version": "1.2.0"}, {"version": "1.3.0"}], 5))
    new = envelope(_document([{"version": "1.2.0"}, {"version": "1.3.0", "withdrawn": True}], 6))
    first = plant_trigger(project, trigger_fields("1.2.0", manifest=new))
    assert scene.agent(OPENTRACE_REGISTRY_KEYS=pinned).returncode == 0
    assert backend.final_state(first) == "succeeded"

    replay = plant_trigger(project, trigger_fields("1.3.0", manifest=old))
    done = scene.agent(OPENTRACE_REGISTRY_KEYS=pinned)

    assert done.returncode == 2, done.stderr
    assert "meta_version 5 is lower than 6" in backend.run_events(replay)[-1]["message"]
    assert project.head() == project.commits["1.2.0"]


def test_a_signed_document_without_expires_is_refused(scene, signer):
    project, backend, _state_dir = scene.project, scene.backend, scene.state_dir
    envelope, pinned = signer
    run_id = plant_trigger(
        project,
        trigger_fields("1.2.0", manifest=envelope(_document([{"version": "1.2.0"}], 1, expires=False))),
    )

    done = scene.agent(OPENTRACE_REGISTRY_KEYS=pinned)

    assert done.returncode == 2
    assert "expires" in backend.run_events(run_id)[-1]["message"]
    assert project.head() == project.commits["1.1.5"]


def test_without_keys_a_forged_trigger_cannot_install_what_the_registry_does_not_offer(scene):
    project, backend, _state_dir = scene.project, scene.backend, scene.state_dir
    project.add_release("1.3.0rc1")  # tagged on the remote, never released
    project.registry = _document([{"version": "1.2.0"}], 3)
    forged = trigger_fields("1.3.0rc1", manifest=_document([{"version": "1.3.0rc1"}], 99))

    run_id = plant_trigger(project, forged)
    done = scene.agent()

    assert done.returncode == 2, done.stderr
    assert "not offered by the registry" in backend.run_events(run_id)[-1]["message"]
    assert project.head() == project.commits["1.1.5"]


# --- signals ---------------------------------------------------------------------------------------


def test_a_pid_file_naming_another_process_gets_no_signal(scene):
    project, backend, _state_dir = scene.project, scene.backend, scene.state_dir
    bystander = subprocess.Popen(["sleep", "60"])  # a root process; SIGHUP would end it
    try:
        as_app(
            """
            import os, sys
            os.makedirs(os.path.join(sys.argv[1], "run"), exist_ok=True)
            with open(os.path.join(sys.argv[1], "run", "supervisor.pid"), "w") as handle:
                handle.write(sys.argv[2] + "\\n")
            """,
            str(project.data_dir),
            str(bystander.pid),
        )
        run_id = plant_trigger(project, trigger_fields("1.2.0"))

        done = scene.agent()

        assert done.returncode == 0, done.stderr
        assert backend.final_state(run_id) == "succeeded"  # through the restart command
        assert bystander.poll() is None, "the agent signalled a process it did not start"
    finally:
        bystander.send_signal(signal.SIGTERM)
        bystander.wait(10)


# --- folders the agent will not use ---------------------------------------------------------------


def test_a_state_dir_the_app_made_is_refused(scene):
    project, backend = scene.project, scene.backend
    planted = project.data_dir / "agent"
    as_app("import os, sys; os.mkdir(sys.argv[1], 0o700)", str(planted))
    done = subprocess.run(
        [sys.executable, "-m", "host_agent", *agent_argv(project, backend), "--state-dir", str(planted)],
        cwd=project.checkout,
        env=agent_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 2, done.stderr
    assert "belongs to uid 10001" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_updates_folder_swapped_for_a_link_is_refused(scene):
    project, host = scene.project, scene.host
    as_app(
        "import os, sys; os.rename(sys.argv[1], sys.argv[1] + '.old'); os.symlink(sys.argv[2], sys.argv[1])",
        str(project.updates),
        str(host.empty),
    )

    done = scene.agent()

    assert done.returncode == 2, done.stderr
    assert "symbolic link" in done.stderr
    assert list(host.empty.iterdir()) == []
