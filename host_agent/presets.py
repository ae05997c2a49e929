"""Runbook presets (SPEC §8): what `build`, `deploy` and `migrate` run, and how rollback redeploys.

The steps themselves (`host_agent.steps`) are the same code for both presets.
`local`: the project dir is a checkout served by processes on this machine (`make run`).
`compose`: the project dir holds `docker-compose.prod.yml`; images are built beside the
running ones and the previous images stay tagged `:rollback` so a rollback needs no rebuild.
With the proxy running, `deploy` rolls the web service over without downtime: a container
of the new release beside the old one, traffic moved once it is ready, the old one drained
and, once the release is healthy, stopped (docs/operations.md, "Updates without downtime").

Builds run at the lowest CPU and I/O priority (`nice`, `ionice -c 3`) so the release that
is still serving keeps its latency; on compose the engine builds, and the serving
containers' cpu_shares (docker-compose.prod.yml) outweigh the build's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from contract import maintenance
from contract.files import UnsafeFile, read_bounded
from host_agent.backup import BackupTools, data_owner
from host_agent.config import AgentConfig
from host_agent.engine import ContainerState, Engine, EngineError, plain_id, project_name, split_image
from host_agent.errors import StepFailed
from host_agent.proxy import API_SCRIPT, ProxyControl, ProxyError
from host_agent.safefs import Unsafe, open_subdir, remove_name, replace_file
from host_agent.shell import LogSink, run_command

COMPOSE_FILE = "docker-compose.prod.yml"
WEB_SERVICE = "web"
# docker-compose.prod.yml's service for one-off commands of the new image (never `up`).
MANAGE_SERVICE = "manage"
DB_SERVICE = "postgres"
PROXY_SERVICE = "proxy"
# Without its runtime API, the proxy takes a server out after 3 failed readiness checks a
# second apart (deploy/proxy/haproxy.cfg) and back after 2 good ones.
DRAIN_SETTLE_SECONDS = 4.0
UNDRAIN_SETTLE_SECONDS = 3.0
# With it (host_agent/proxy.py): how long the proxy may take to discover a new container by
# DNS and pass its first check, and to forget a removed one.
PROXY_ADMIT_TIMEOUT = 30.0
PROXY_RELEASE_TIMEOUT = 15.0
# docker-compose.prod.yml's stop_grace_period for web: more than gunicorn's graceful timeout.
WEB_STOP_TIMEOUT = 40.0
# Inside a web container: its own readiness and version, without the proxy.
READY_PROBE = """
import json, sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen("http://127.0.0.1:8000/healthz/ready", timeout=3) as answer:
        print("ready", json.load(answer).get("version", ""))
except urllib.error.HTTPError as exc:
    print("not ready:", exc.code, exc.read(300).decode("utf-8", "replace"))
    sys.exit(1)
except Exception as exc:
    print("not ready:", type(exc).__name__, exc)
    sys.exit(1)
"""


def low_priority(argv: list[str]) -> list[str]:
    """`argv` at the lowest CPU and I/O priority, with the tools this host has."""
    prefix: list[str] = []
    if shutil.which("nice"):
        prefix += ["nice", "-n", "19"]
    if shutil.which("ionice"):
        prefix += ["ionice", "-c", "3"]
    return [*prefix, *argv]


def read_version(project_dir: Path) -> str:
    try:
        return (project_dir / "VERSION").read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return "unknown"


class Preset:
    name = ""

    def __init__(self, config: AgentConfig, log: LogSink) -> None:
        self.config = config
        self.log = log

    def sh(
        self,
        step: str,
        argv: list[str],
        timeout: float = 1800,
        show_output: bool = True,
        stdin: bytes | None = None,
    ) -> list[str]:
        return run_command(
            step,
            argv,
            cwd=self.config.project_dir,
            env=self.config.env,
            log=self.log,
            timeout=timeout,
            show_output=show_output,
            stdin=stdin,
        )

    def manage_argv(self, args: list[str]) -> list[str]:
        """`manage.py <args>` run with the new release's code (once `fetch` and `build` are done)."""
        raise NotImplementedError

    def manage(
        self, step: str, args: list[str], *, stdin: bytes | None = None, timeout: float = 1800
    ) -> list[str]:
        return self.sh(step, self.manage_argv(args), timeout=timeout, stdin=stdin)

    # --- migrations, with the new release's code (SPEC §7, §9) ------------------------------

    def migration_state(self, step: str, *, check_compatible: bool) -> str:
        """`migrate_all --state`: the JSON line of what both databases have applied.

        With `check_compatible`, the same run first checks the new migrations for backward
        compatibility (one container, one Django start-up): `CommandFailed` with
        `contract.migrations.INCOMPATIBLE` when they fail.
        """
        args = ["migrate_all", "--state", *(["--check-compatible"] if check_compatible else [])]
        lines = self.manage(step, args)
        return lines[-1] if lines else ""

    def revert_migrations(self, step: str, state: str) -> list[str]:
        """`migrate_all --revert-to -` with the saved state on stdin; its report lines."""
        return self.manage(step, ["migrate_all", "--revert-to", "-"], stdin=state.encode("utf-8"))

    def preflight(self, step: str) -> str | None:
        """What this preset needs before anything is touched; a short report, or None."""
        return None

    def backup_tools(self) -> BackupTools:
        raise NotImplementedError

    def build(self, step: str, requirements_changed: bool) -> str:
        raise NotImplementedError

    def deploy(self, step: str) -> str:
        raise NotImplementedError

    def migrate(self, step: str) -> str:
        raise NotImplementedError

    def redeploy_previous(self, step: str, requirements_changed: bool) -> str:
        """After the previous commit is checked out again: serve it."""
        raise NotImplementedError

    def undo_build(self, step: str, requirements_changed: bool) -> None:
        """After a failure before `deploy`, with the previous commit checked out again."""

    def verify_running(self, step: str) -> str | None:
        """After /healthz answers for the new release: anything else that must hold, or None.

        The release is healthy then: what `deploy` kept for a quick rollback (drained web
        containers of the previous release) is stopped here.
        """
        return None

    def stop_serving(self, step: str, version: str) -> str:
        """For a release that declares downtime: stop the web app (running `version`) before migrating."""
        raise StepFailed(step, f"the {self.name} preset cannot stop the web app for a downtime release")

    def resume_serving(self, step: str) -> str | None:
        """What `stop_serving` left behind is undone (the new release serves, or the run rolls back).

        Safe to call more than once, and after a crash; a short report, or None.
        """
        return None


class LocalPreset(Preset):
    name = "local"

    @property
    def pid_file(self) -> Path:
        return self.config.data_dir / "run" / "supervisor.pid"

    def backup_tools(self) -> BackupTools:
        return BackupTools(
            data_dir=self.config.data_dir,
            project_dir=self.config.project_dir,
            env=self.config.env,
            python_cmd=[self.config.python],
            owner=data_owner(self.config.data_dir),
            clickhouse=self.config.env.get("OPENTRACE_AGENT_BACKUP_CLICKHOUSE", "1") != "0",
        )

    def build(self, step: str, requirements_changed: bool) -> str:
        # Installed into the running venv while the old release keeps serving.
        done = []
        if requirements_changed:
            self.sh(
                step,
                low_priority(
                    [self.config.python, "-m", "pip", "install", "--quiet", "-r", "requirements.txt"]
                ),
            )
            done.append("requirements installed")
        else:
            done.append("requirements unchanged, pip skipped")
        if (self.config.project_dir / "staticfiles").is_dir():
            self.sh(step, low_priority([self.config.python, "manage.py", "collectstatic", "--noinput"]))
            done.append("static files collected")
        return "; ".join(done)

    def supervisor_pid(self) -> int | None:
        """The pid of `scripts/run_local.py` serving this checkout, or None.

        The pid file is in the data dir, which the app can write: a pid is believed only when
        it is our parent (the supervisor starts the agent under `make run`) or when /proc says
        it is the supervisor of this project dir, run by the data dir's owner or by us.
        Signals never go to a process the file merely names.
        """
        try:
            raw = read_bounded(self.pid_file, limit=64, what="the supervisor's pid file").data
            pid = int(raw.decode("ascii").strip())
        except (OSError, UnsafeFile, UnicodeDecodeError, ValueError):
            return None
        if pid <= 1:
            return None
        if pid == os.getppid() or self._is_our_supervisor(pid):
            return pid
        return None

    def _is_our_supervisor(self, pid: int) -> bool:
        proc = Path("/proc") / str(pid)
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            status = (proc / "status").read_text(encoding="utf-8", errors="replace")
            cwd = os.readlink(proc / "cwd")
            owner = self.config.data_dir.stat().st_uid
        except OSError:
            return False
        uid_line = next((line for line in status.splitlines() if line.startswith("Uid:")), "")
        uids = {int(u) for u in uid_line.split()[1:] if u.isdigit()}
        if not uids or not uids <= {owner, os.geteuid()}:
            return False
        if not any(arg.endswith(b"scripts/run_local.py") for arg in argv[:3]):
            return False
        return Path(cwd) == self.config.project_dir

    def deploy(self, step: str) -> str:
        pid = self.supervisor_pid()
        if pid is not None:
            os.kill(pid, signal.SIGHUP)
            self.log(step, [f"sent SIGHUP to the supervisor (pid {pid}) to restart web and worker"])
            return f"supervisor {pid} restarting the web server and worker"
        if self.config.restart_command:
            self.sh(step, self.config.restart_command)
            return "restart command ran"
        raise StepFailed(
            step,
            f"no supervisor is running ({self.pid_file} missing or stale) and "
            "OPENTRACE_AGENT_RESTART_COMMAND is not set",
        )

    def _run_dir(self, step: str) -> int:
        """`<DATA_DIR>/run`, opened without following a link (the app can write the data dir)."""
        try:
            return open_subdir(
                self.config.data_dir, Path(maintenance.RUN_DIR), create_owner=data_owner(self.config.data_dir)
            )
        except (OSError, Unsafe) as exc:
            where = self.config.data_dir / maintenance.RUN_DIR
            raise StepFailed(step, f"cannot open {where}: {exc}") from None

    def stop_serving(self, step: str, version: str) -> str:
        """The maintenance flag (`contract.maintenance`): the running `version` answers 503.

        Its processes keep running: the tracking endpoint still acknowledges into its buffer,
        and `deploy` reloads the web server as for any release (the new processes serve, the
        flag names the old version only).
        """
        fd = self._run_dir(step)
        try:
            replace_file(fd, maintenance.NAME, maintenance.encode(version))
        except OSError as exc:
            raise StepFailed(step, f"cannot write the maintenance flag: {exc}") from None
        finally:
            os.close(fd)
        where = self.config.data_dir / maintenance.RUN_DIR / maintenance.NAME
        self.log(step, [f"{where} written: {version} answers the dashboard with the maintenance page"])
        return f"{version} answers the dashboard with the maintenance page (503, Retry-After)"

    def resume_serving(self, step: str) -> str | None:
        fd = self._run_dir(step)
        try:
            removed = remove_name(fd, maintenance.NAME)
        except (OSError, Unsafe) as exc:
            raise StepFailed(step, f"cannot remove the maintenance flag: {exc}") from None
        finally:
            os.close(fd)
        return "maintenance page removed" if removed else None

    def manage_argv(self, args: list[str]) -> list[str]:
        # The checkout on disk is the new release from `fetch` on; the old processes keep
        # the code they loaded.
        return [self.config.python, "manage.py", *args]

    def migrate(self, step: str) -> str:
        if list(self.config.project_dir.glob("*/management/commands/migrate_all.py")):
            self.manage(step, ["migrate_all"])
            return "manage.py migrate_all done"
        self.manage(step, ["migrate", "--noinput"])
        return "manage.py migrate done (this release has no migrate_all)"

    def redeploy_previous(self, step: str, requirements_changed: bool) -> str:
        self.undo_build(step, requirements_changed)
        return self.deploy(step)

    def undo_build(self, step: str, requirements_changed: bool) -> None:
        # The running release shares the venv: put its own requirements back.
        if requirements_changed:
            self.sh(step, [self.config.python, "-m", "pip", "install", "--quiet", "-r", "requirements.txt"])


class ComposePreset(Preset):
    name = "compose"

    def __init__(self, config: AgentConfig, log: LogSink) -> None:
        super().__init__(config, log)
        self._compose: list[str] | None = None
        self.engine = Engine(config.env)
        self.project = project_name(config.env, config.project_dir)

    def compose_files(self) -> list[str]:
        """docker-compose.prod.yml, then the extra files COMPOSE_FILE names (install.sh's --compose-file)."""
        setting = self.config.env.get("COMPOSE_FILE", "").strip()
        if not setting:
            return [COMPOSE_FILE]
        files = [name for name in setting.split(self.config.env.get("COMPOSE_PATH_SEPARATOR") or ":") if name]
        if files[0] != COMPOSE_FILE:
            raise StepFailed("preflight", f"COMPOSE_FILE must start with {COMPOSE_FILE}, got {setting!r}")
        missing = [name for name in files if not (self.config.project_dir / name).is_file()]
        if missing:
            raise StepFailed("preflight", f"COMPOSE_FILE names missing files: {', '.join(missing)}")
        return files

    def compose(self) -> list[str]:
        """`docker compose -f …`, or `docker-compose -f …` when the v2 plugin is absent."""
        if self._compose is None:
            docker = self.config.docker
            try:
                probe = subprocess.run(
                    [docker, "compose", "version"],
                    env=self.config.env,
                    capture_output=True,
                    timeout=30,
                    check=False,
                )
                v2 = probe.returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                v2 = False
            if v2:
                base = [docker, "compose"]
            else:
                legacy = shutil.which("docker-compose", path=self.config.env.get("PATH"))
                if legacy is None:
                    raise StepFailed(
                        "preflight", "neither `docker compose` nor `docker-compose` is available"
                    )
                base = [legacy]
            files = [arg for name in self.compose_files() for arg in ("-f", name)]
            self._compose = [*base, *files]
        return self._compose

    def preflight(self, step: str) -> str:
        command = self.compose()
        try:
            states = self.engine.containers(self.project)
        except EngineError as exc:
            raise StepFailed(step, str(exc)) from None
        running = sum(1 for s in states if s.status == "running")
        tool = "docker compose" if command[1:2] == ["compose"] else "docker-compose"
        files = ", ".join(self.compose_files())
        return f"{tool} with {files}; {running} containers running in {self.project}"

    def backup_tools(self) -> BackupTools:
        compose = self.compose()
        data_dir = self.config.data_dir
        inside = self.config.container_data_dir.rstrip("/")

        def runtime_path(path: Path) -> str:
            return f"{inside}/{path.relative_to(data_dir)}"

        # pg_dump/pg_restore run inside the database container, over its local socket, with
        # the user and database the official image was started with: no password on the host.
        in_db = [*compose, "exec", "-T", DB_SERVICE, "sh", "-c"]
        return BackupTools(
            data_dir=data_dir,
            project_dir=self.config.project_dir,
            env=self.config.env,
            python_cmd=[*self.web_exec("backup"), "python"],
            pg_dump_cmd=[*in_db, 'exec pg_dump -Fc --no-owner -U "$POSTGRES_USER" "$POSTGRES_DB"'],
            pg_restore_cmd=[*in_db, "exec pg_restore --no-owner --file=-"],
            psql_cmd=[
                *in_db,
                "exec psql -X -q -v ON_ERROR_STOP=1 --single-transaction "
                '-U "$POSTGRES_USER" -d "$POSTGRES_DB"',
            ],
            runtime_path=runtime_path,
            owner=data_owner(data_dir),
            python_as_owner=False,
            clickhouse_embedded=False,
            container_data_dir=inside,
            clickhouse=self.config.env.get("OPENTRACE_AGENT_BACKUP_CLICKHOUSE", "1") != "0",
        )

    def _images(self, step: str) -> list[str]:
        """The images this checkout builds (services with `build:`), each once."""
        return list(self._built_services(step))

    def _built_services(self, step: str) -> dict[str, str]:
        """Each image this checkout builds, with the one service whose build makes it.

        `docker compose config --format json` says which services are built. docker-compose
        v1 has no JSON output (nor `config --images`): there, the images the project's
        containers were created from, pulled ones included (an extra tag costs nothing, and
        v1 skips a service without `build:`).
        """
        built: dict[str, str] = {}
        try:
            # Not logged: the resolved configuration holds the secrets from .env.
            lines = self.sh(step, [*self.compose(), "config", "--format", "json"], show_output=False)
            services = json.loads("\n".join(lines)).get("services", {})
            for name, service in sorted(services.items()):
                if service.get("build") and service.get("image"):
                    built.setdefault(service["image"], name)
        except (StepFailed, ValueError, AttributeError, TypeError):
            for state in self.container_states(step):
                if state.image and not state.oneoff:
                    built.setdefault(state.image, state.service)
        return built

    @staticmethod
    def rollback_tag(image: str) -> str:
        repo, _ = split_image(image)
        return f"{repo}:rollback"

    def _tag(self, step: str, source: str, target: str) -> str | None:
        try:
            image_id = self.engine.tag(source, target)
        except EngineError as exc:
            raise StepFailed(step, str(exc)) from None
        if image_id:
            self.log(step, [f"{source} ({short_id(image_id)}) tagged {target}"])
        return image_id

    def build(self, step: str, requirements_changed: bool) -> str:
        kept = 0
        built = self._built_services(step)
        for image in built:
            target = self.rollback_tag(image)
            superseded = self._image_id(step, target)
            kept_id = self._tag(step, image, target)
            if not kept_id:
                self.log(step, [f"{image}: no local image to keep for rollback"])
                continue
            kept += 1
            if superseded and superseded != kept_id:
                # The release before the previous one: no rollback goes back to it. Removed
                # only when nothing else uses it (no other tag, no container).
                try:
                    removed = self.engine.remove_unused(superseded)
                except EngineError as exc:
                    removed, why = False, str(exc)
                else:
                    why = "still tagged or in use"
                note = "removed" if removed else f"kept ({why})"
                self.log(step, [f"the older rollback image {short_id(superseded)}: {note}"])
        # The running containers keep serving the old images while this builds, at a lower
        # priority than theirs; the Dockerfile installs requirements.txt in a layer of its own,
        # reused from the engine's cache when the file did not change. One build per image:
        # web, worker, beat, flusher and manage share one, and docker-compose v1 would build
        # it once for each (a fully cached build still costs about 11 s on podman).
        services = sorted(set(built.values()))
        self.sh(step, low_priority([*self.compose(), "build", *services]), timeout=3600)
        return f"images built; {kept} previous image(s) tagged :rollback"

    def _image_id(self, step: str, image: str) -> str | None:
        try:
            return self.engine.image_id(image)
        except EngineError as exc:
            raise StepFailed(step, str(exc)) from None

    def container_states(self, step: str) -> list[ContainerState]:
        try:
            return self.engine.containers(self.project)
        except EngineError as exc:
            raise StepFailed(step, str(exc)) from None

    def _up(self, step: str) -> str:
        self.sh(step, [*self.compose(), "up", "-d"], timeout=900)
        states = self.container_states(step)
        if not states:
            raise StepFailed(step, f"`up -d` left no containers in compose project {self.project!r}")
        self.log(step, [state.describe() for state in states])
        stopped = [s.service for s in states if s.status in {"exited", "dead", "created"}]
        if stopped:
            raise StepFailed(step, f"not running after `up -d`: {', '.join(stopped)}")
        return f"{len(states)} containers of project {self.project} up"

    def web_exec(self, step: str) -> list[str]:
        """`compose exec -T web`, with `--index` of a running web container when it is not 1.

        A rollout leaves the service with container number 2 (or higher), and docker-compose
        v1's `exec` looks for number 1 unless told otherwise.
        """
        try:
            webs = self.web_containers(step)
        except StepFailed:
            webs = []
        if not webs:
            # The app is stopped (a restore by hand stops it first): a one-off container of
            # the same image does the work; `exec` would only fail.
            return self.one_off()
        numbers = [w.number for w in webs if w.number]
        index = ["--index", numbers[0]] if numbers and "1" not in numbers else []
        return [*self.compose(), "exec", "-T", *index, WEB_SERVICE]

    def one_off(self) -> list[str]:
        """A one-off container of the app image, removed when it exits, starting nothing else."""
        return [*self.compose(), "run", "--rm", "--no-deps", "-T", MANAGE_SERVICE]

    # -- the web service behind the proxy --------------------------------------------------

    def proxy_running(self, step: str) -> bool:
        return any(s.service == PROXY_SERVICE and s.status == "running" for s in self.container_states(step))

    def web_containers(self, step: str) -> list[ContainerState]:
        """The web service's running containers (not `compose run` ones), oldest name first."""
        return [
            s
            for s in self.container_states(step)
            if s.service == WEB_SERVICE and s.status == "running" and not s.oneoff
        ]

    def _current_web_image(self, step: str, webs: Sequence[ContainerState]) -> str | None:
        """The id the web service's image name points to now (after a build: the new release)."""
        names = [w.image for w in webs if w.image] or [
            image for image in self._images(step) if split_image(image)[0].endswith("/web")
        ]
        return plain_id(self._image_id(step, names[0]) or "") if names else None

    def _in_web(self, step: str, web: ContainerState, argv: list[str]) -> tuple[int, str]:
        try:
            return self.engine.exec(web.id, argv)
        except EngineError as exc:
            return 1, str(exc)

    def proxy_control(self, step: str) -> ProxyControl | None:
        """The running proxy's runtime API, or None (then traffic follows its readiness checks).

        Slots an earlier agent left held or drained (killed mid-rollout) are given back first.
        """
        proxies = [
            s
            for s in self.container_states(step)
            if s.service == PROXY_SERVICE and s.status == "running" and not s.oneoff
        ]
        if not proxies:
            return None
        proxy = proxies[0]
        control = ProxyControl(
            lambda command: self._in_web(step, proxy, ["bash", "-c", API_SCRIPT, "_", command])
        )
        try:
            stale = control.release_stale()
        except ProxyError as exc:
            self.log(step, [f"no runtime API on the proxy ({exc}); traffic follows its readiness checks"])
            return None
        if stale:
            self.log(step, [f"proxy slots left held by an earlier run given back: {', '.join(stale)}"])
        return control

    @staticmethod
    def _addresses(webs: Sequence[ContainerState]) -> list[str]:
        return [address for web in webs for address in web.addresses]

    def _wait_ready(self, step: str, webs: Sequence[ContainerState], version: str) -> None:
        """Until every container's own /healthz/ready reports `version`, or StepFailed."""
        deadline = time.monotonic() + self.config.healthcheck_timeout
        waiting = list(webs)
        last = ""
        while waiting:
            for web in list(waiting):
                code, output = self._in_web(step, web, ["python", "-c", READY_PROBE])
                if code == 0 and output.split()[-1:] == [version]:
                    waiting.remove(web)
                    self.log(step, [f"{web.name} is ready and serves {version}"])
                else:
                    last = f"{web.name}: {' '.join(output.split())[:200] or f'exit {code}'}"
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise StepFailed(
                    step,
                    f"the new web container did not become ready for {version} within "
                    f"{self.config.healthcheck_timeout:.0f} s ({last})",
                )
            time.sleep(1.0)

    def _set_draining(
        self, step: str, webs: Sequence[ContainerState], draining: bool, control: ProxyControl | None = None
    ) -> None:
        """Draining: no new request (in-flight ones finish); undrained: traffic back.

        The readiness file inside each container says so to the proxy's checks; with the
        runtime API the proxy is also told at once instead of after its checks.
        """
        if not webs:
            return
        script = 'touch "$OPENTRACE_DRAIN_FILE"' if draining else 'rm -f "$OPENTRACE_DRAIN_FILE"'
        for web in webs:
            code, output = self._in_web(step, web, ["sh", "-c", script])
            if code != 0:
                raise StepFailed(
                    step, f"cannot {'drain' if draining else 'undrain'} {web.name}: {output.strip()}"
                )
        names = ", ".join(w.name for w in webs)
        if control is None:
            time.sleep(DRAIN_SETTLE_SECONDS if draining else UNDRAIN_SETTLE_SECONDS)
        else:
            try:
                if draining:
                    slots = control.stop_sending(self._addresses(webs), "drain")
                else:
                    slots = control.admit(self._addresses(webs), PROXY_ADMIT_TIMEOUT)
            except ProxyError as exc:
                raise StepFailed(step, f"the proxy: {exc}") from None
            names += f" (proxy slots {', '.join(slots) or 'none'})"
        self.log(
            step, [f"{names}: {'draining, no new requests' if draining else 'ready again, traffic back'}"]
        )

    def _retire(self, step: str, webs: Sequence[ContainerState], control: ProxyControl | None = None) -> None:
        """Stop web containers: no new request first, then in-flight ones finish (gunicorn's
        graceful stop); with the runtime API their proxy slots are given back once empty."""
        if not webs:
            return
        slots: list[str] = []
        if control is not None:
            try:
                slots = control.stop_sending(self._addresses(webs), "maint")
            except ProxyError as exc:
                self.log(step, [f"the proxy: {exc}; its checks will take the stopped containers out"])
                control = None
        for web in webs:
            try:
                self.engine.stop_and_remove(web.id, WEB_STOP_TIMEOUT)
            except EngineError as exc:
                raise StepFailed(step, str(exc)) from None
            self.log(step, [f"{web.name} stopped and removed"])
        if control is not None and slots:
            self._release(step, control, slots)

    def _release(self, step: str, control: ProxyControl, slots: Sequence[str]) -> None:
        try:
            left = control.release(slots, PROXY_RELEASE_TIMEOUT)
        except ProxyError as exc:
            left, why = list(slots), str(exc)
        else:
            why = f"their address did not go within {PROXY_RELEASE_TIMEOUT:.0f} s"
        if left:
            # The next run's proxy_control() gives them back; until then they take no container.
            self.log(step, [f"proxy slots {', '.join(left)} not given back yet ({why})"])

    def _start_web_beside(
        self, step: str, version: str, control: ProxyControl | None = None
    ) -> tuple[list[ContainerState], list[ContainerState]]:
        """A web container of the image the service names now, beside each running one; (new, old).

        With the runtime API the free proxy slots are held first, so the new container,
        discovered into one of them, gets no request until its own readiness passed."""
        old = self.web_containers(step)
        wanted = len(old) + max(1, len(old))
        held: list[str] = []
        if control is not None:
            try:
                held = control.hold_free_slots()
            except ProxyError as exc:
                raise StepFailed(step, f"the proxy: {exc}") from None
        admitted: list[str] = []
        try:
            self.sh(
                step,
                [
                    *self.compose(),
                    "up",
                    "-d",
                    "--no-deps",
                    "--no-recreate",
                    "--scale",
                    f"{WEB_SERVICE}={wanted}",
                    WEB_SERVICE,
                ],
                timeout=900,
            )
            known = {w.id for w in old}
            new = [w for w in self.web_containers(step) if w.id not in known]
            if not new:
                raise StepFailed(step, "`up --scale` started no new web container")
            try:
                self._wait_ready(step, new, version)
                if control is not None:
                    try:
                        admitted = control.admit(self._addresses(new), PROXY_ADMIT_TIMEOUT)
                    except ProxyError as exc:
                        raise StepFailed(step, f"the proxy: {exc}") from None
                    self.log(step, [f"the proxy sends requests to {', '.join(admitted)} ({version})"])
            except StepFailed:
                self._retire(step, new, control)
                raise
        finally:
            if control is not None and held:
                self._release(step, control, [name for name in held if name not in admitted])
        return new, old

    def _replace_others(self, step: str) -> str:
        """Every service but web: recreated where its image or definition changed.

        Compose stops a container before it starts its replacement, so there is never more
        than one beat; SIGTERM is Celery's warm shutdown (the task at hand finishes, acks are
        late, the queue waits in Redis) and the flusher's clean stop.
        """
        lines = self.sh(step, [*self.compose(), "config", "--services"], show_output=False)
        # Naming `manage` would start it: its profile keeps it out of `up`, not out of this list.
        skip = {"", WEB_SERVICE, MANAGE_SERVICE}
        services = [name.strip() for name in lines if name.strip() not in skip]
        if services:
            self.sh(step, [*self.compose(), "up", "-d", "--no-deps", *services], timeout=900)
        return ", ".join(services)

    def deploy(self, step: str) -> str:
        if not self.proxy_running(step):
            # No proxy yet (the release that brings it, or a stopped install): recreate all.
            return f"containers recreated; {self._up(step)}"
        version = read_version(self.config.project_dir)
        control = self.proxy_control(step)
        new, old = self._start_web_beside(step, version, control)
        self._set_draining(step, old, True, control)
        others = self._replace_others(step)
        return (
            f"{len(new)} web container(s) of {version} serving beside {len(old)} drained one(s), "
            f"stopped once healthy; {others or 'no other service'} replaced"
        )

    def stop_serving(self, step: str, version: str) -> str:
        webs = self.web_containers(step)
        control = self.proxy_control(step)
        self._set_draining(step, webs, True, control)
        self._retire(step, webs, control)
        return f"{len(webs)} web container(s) stopped; the proxy serves the maintenance page"

    def verify_running(self, step: str) -> str:
        """After /healthz: no container of the project has exited, restarts or is unhealthy.

        Then the web containers of the previous release, drained by `deploy` and kept for a
        rollback, are stopped (their in-flight requests finish first)."""
        states = self.container_states(step)
        failed = [s.describe() for s in states if s.failed and not s.oneoff]
        if failed:
            raise StepFailed(step, f"containers not healthy: {'; '.join(failed)}")
        webs = self.web_containers(step)
        current = self._current_web_image(step, webs)
        previous = [w for w in webs if current and w.image_id != current]
        self._retire(step, previous, self.proxy_control(step) if previous else None)
        retired = (
            f"; {len(previous)} drained web container(s) of the previous release stopped" if previous else ""
        )
        return f"{len(states)} containers running, none unhealthy{retired}"

    def manage_argv(self, args: list[str]) -> list[str]:
        # A one-off container of the newly built image: `migrate` runs before `deploy`, while
        # the running web container still holds the old code.
        return [*self.one_off(), "python", "manage.py", *args]

    def migrate(self, step: str) -> str:
        self.manage(step, ["migrate_all"])
        return "manage.py migrate_all done in a container of the new image"

    def undo_build(self, step: str, requirements_changed: bool) -> None:
        # The build may have moved the tags the containers are created from: point them back
        # so nothing (a restart policy, an admin's `up -d`) starts the unmigrated release.
        for image in self._images(step):
            self._tag(step, self.rollback_tag(image), image)

    def redeploy_previous(self, step: str, requirements_changed: bool) -> str:
        images = self._images(step)
        if not images:
            # Nothing says which images were kept: build the previous release again.
            self.log(step, ["no image names known for this project; the previous release is rebuilt"])
            self.sh(step, [*self.compose(), "build"], timeout=3600)
        rebuilt = False
        for image in images:
            if self._tag(step, self.rollback_tag(image), image) is None and not rebuilt:
                self.log(step, [f"{image}: no :rollback image; it is rebuilt"])
                self.sh(step, low_priority([*self.compose(), "build"]), timeout=3600)
                rebuilt = True
        if not self.proxy_running(step):
            return f"previous images redeployed; {self._up(step)}"
        version = read_version(self.config.project_dir)
        webs = self.web_containers(step)
        current = self._current_web_image(step, webs)
        previous = [w for w in webs if w.image_id == current]
        others = [w for w in webs if w.image_id != current]
        control = self.proxy_control(step)
        if previous:
            # Still running (drained by deploy, or never drained when deploy did not get so
            # far): traffic goes back to them within seconds.
            self._set_draining(step, previous, False, control)
            self._wait_ready(step, previous, version)
        else:
            previous, _ = self._start_web_beside(step, version, control)
        self._set_draining(step, others, True, control)
        self._retire(step, others, control)
        replaced = self._replace_others(step)
        return (
            f"previous images redeployed; {len(previous)} web container(s) of {version} serve, "
            f"{len(others)} of the failed release stopped; {replaced or 'no other service'} replaced"
        )


def short_id(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def make_preset(config: AgentConfig, log: LogSink) -> Preset:
    return {"local": LocalPreset, "compose": ComposePreset}[config.preset](config, log)
