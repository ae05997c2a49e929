"""The container engine through the Docker SDK (`docker`), for what the CLI does clumsily.

The compose preset drives builds and container recreation with the compose CLI (SPEC §8),
and uses this module for two things: keeping and restoring the previous images
(`docker tag` by id, no parsing of CLI output) and reading the state and health of the
project's containers (labels, `State.Health`) without scraping `docker ps`.

The SDK is imported on first use: the `local` preset and every other command of the agent
run on a bare Python. install.sh puts it in the agent's virtualenv (requirements-agent.txt).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from host_agent.errors import AgentError

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
ONEOFF_LABEL = "com.docker.compose.oneoff"  # `compose run` containers
NUMBER_LABEL = "com.docker.compose.container-number"  # what `compose exec --index` selects


class EngineError(AgentError):
    pass


@dataclass(frozen=True)
class ContainerState:
    service: str
    name: str
    status: str  # created | running | restarting | exited | paused | dead
    health: str  # healthy | unhealthy | starting | none (no health check)
    image: str  # the name it was created from, e.g. opentrace/web:local
    id: str = ""
    image_id: str = ""  # the image it runs, whatever its name points to now
    oneoff: bool = False
    number: str = ""
    addresses: tuple[str, ...] = ()  # its IPv4 address on each network (what the proxy resolves)

    @property
    def failed(self) -> bool:
        return self.status in {"exited", "dead", "restarting"} or self.health == "unhealthy"

    def describe(self) -> str:
        health = "" if self.health == "none" else f", {self.health}"
        return f"{self.service}: {self.status}{health}"


def project_name(env: Mapping[str, str], project_dir: Path) -> str:
    """COMPOSE_PROJECT_NAME, else what both compose versions derive from the folder name."""
    name = env.get("COMPOSE_PROJECT_NAME", "").strip()
    if name:
        return name
    return re.sub(r"[^a-z0-9_-]", "", project_dir.name.lower()) or "default"


def plain_id(image_id: str) -> str:
    """An image id without its `sha256:` prefix (engines differ in which they print)."""
    return image_id.removeprefix("sha256:")


def split_image(image: str) -> tuple[str, str]:
    """`repo[:tag]` → (repo, tag); a ':' inside a registry host:port is not a tag."""
    repo, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        return image, "latest"
    return repo, tag


class Engine:
    """The Docker API at DOCKER_HOST (or the default socket), as the project's commands see it."""

    def __init__(self, env: Mapping[str, str], timeout: float = 60) -> None:
        self.env = dict(env)
        self.timeout = timeout
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                import docker
            except ImportError:
                raise EngineError(
                    "the compose preset needs the Docker SDK for Python: install.sh installs it "
                    "into .agent-venv (pip install -r requirements-agent.txt)"
                ) from None
            try:
                self._client = docker.from_env(environment=self.env, timeout=int(self.timeout))
            except docker.errors.DockerException as exc:
                raise EngineError(f"cannot reach the container engine: {exc}") from None
        return self._client

    def _call(self, what: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        import docker

        try:
            return func(*args, **kwargs)
        except docker.errors.ImageNotFound:
            raise
        except (docker.errors.DockerException, OSError) as exc:
            raise EngineError(f"{what}: {exc}") from None

    def image_id(self, image: str) -> str | None:
        import docker

        try:
            found: str | None = self._call(f"inspecting {image}", self.client.images.get, image).id
            return found
        except docker.errors.ImageNotFound:
            return None

    def tag(self, source: str, target: str) -> str | None:
        """Point `target` at the image `source` names now; its id, or None when there is none."""
        image_id = self.image_id(source)
        if image_id is None:
            return None
        repo, tag = split_image(target)
        self._call(f"tagging {source} as {target}", self.client.api.tag, image_id, repo, tag, force=True)
        return image_id

    def remove_unused(self, image_id: str) -> bool:
        """Remove an image by id unless it is still tagged elsewhere or used by a container."""
        import docker

        try:
            self.client.images.remove(image_id, noprune=False)
        except docker.errors.ImageNotFound:
            return False
        except docker.errors.APIError as exc:
            if exc.status_code == 409:  # in use, or referenced by another name
                return False
            raise EngineError(f"removing {image_id}: {exc}") from None
        except (docker.errors.DockerException, OSError) as exc:
            raise EngineError(f"removing {image_id}: {exc}") from None
        return True

    def containers(self, project: str) -> list[ContainerState]:
        """Every container of the compose project, running or not, by service name."""
        found = self._call(
            f"listing the containers of {project}",
            self.client.containers.list,
            all=True,
            filters={"label": f"{PROJECT_LABEL}={project}"},
        )
        states = []
        for container in found:
            attrs = container.attrs or {}
            state = attrs.get("State") or {}
            config = attrs.get("Config") or {}
            labels = config.get("Labels") or {}
            health = (state.get("Health") or {}).get("Status") or "none"
            networks = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
            addresses = tuple(
                str(net.get("IPAddress"))
                for net in networks.values()
                if isinstance(net, dict) and net.get("IPAddress")
            )
            states.append(
                ContainerState(
                    service=labels.get(SERVICE_LABEL, "?"),
                    name=attrs.get("Name", "").lstrip("/") or container.name,
                    status=str(state.get("Status", "unknown")),
                    health=str(health),
                    image=str(config.get("Image") or ""),
                    id=str(attrs.get("Id") or container.id),
                    image_id=plain_id(str(attrs.get("Image") or "")),
                    oneoff=str(labels.get(ONEOFF_LABEL, "")).lower() == "true",
                    number=str(labels.get(NUMBER_LABEL, "")),
                    addresses=addresses,
                )
            )
        return sorted(states, key=lambda s: (s.service, s.name))

    def exec(self, container_id: str, argv: list[str]) -> tuple[int, str]:
        """Run `argv` in a running container as its user; (exit code, output)."""
        container = self._call(
            f"finding container {container_id[:12]}", self.client.containers.get, container_id
        )
        code, output = self._call(f"running {argv[0]} in {container_id[:12]}", container.exec_run, argv)
        return int(code if code is not None else 1), (output or b"").decode("utf-8", "replace")

    def stop_and_remove(self, container_id: str, timeout: float) -> None:
        """SIGTERM (the image's stop signal), up to `timeout` seconds to exit, then removed."""
        import docker

        try:
            container = self.client.containers.get(container_id)
        except docker.errors.NotFound:
            return
        except (docker.errors.DockerException, OSError) as exc:
            raise EngineError(f"finding container {container_id[:12]}: {exc}") from None
        self._call(f"stopping {container_id[:12]}", container.stop, timeout=int(timeout))
        try:
            container.remove()
        except docker.errors.NotFound:
            pass
        except (docker.errors.DockerException, OSError) as exc:
            raise EngineError(f"removing container {container_id[:12]}: {exc}") from None
