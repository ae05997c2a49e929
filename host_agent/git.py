"""Git, with hooks and other config-driven programs disabled on every call (SPEC §8)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from host_agent.errors import StepFailed

# A release's repository must not be able to run code on the host through git itself.
SAFE_CONFIG = (
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "protocol.ext.allow=never",
)


class Git:
    def __init__(self, executable: str, cwd: Path, env: dict[str, str] | None = None) -> None:
        self.executable = executable
        self.cwd = cwd
        self.env = {**(env or os.environ), "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}

    def run(self, step: str, *args: str, timeout: float = 300) -> str:
        # safe.directory: the agent (often root) works on a checkout another user may own.
        argv = [self.executable, *SAFE_CONFIG, "-c", f"safe.directory={self.cwd}", *args]
        try:
            done = subprocess.run(
                argv, cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise StepFailed(step, f"git {args[0]}: {exc}") from None
        if done.returncode != 0:
            raise StepFailed(
                step, f"git {' '.join(args)} failed: {(done.stderr or done.stdout).strip()[-800:]}"
            )
        return done.stdout

    def head(self, step: str = "preflight") -> str:
        return self.run(step, "rev-parse", "HEAD").strip()

    def branch(self) -> str | None:
        try:
            name = self.run("preflight", "symbolic-ref", "--short", "-q", "HEAD").strip()
        except StepFailed:
            return None  # detached
        return name or None

    def dirty_files(self) -> list[str]:
        out = self.run("preflight", "status", "--porcelain", "--untracked-files=no")
        return [line[3:] for line in out.splitlines() if line.strip()]

    def remote_has_tag(self, remote: str, tag: str) -> bool:
        out = self.run("preflight", "ls-remote", "--tags", remote, f"refs/tags/{tag}", timeout=60)
        return bool(out.strip())

    def remote_tag_commit(self, remote: str, tag: str) -> str | None:
        """The commit `tag` names on `remote` (an annotated tag's peeled `^{}`), or None."""
        out = self.run(
            "preflight",
            "ls-remote",
            "--tags",
            remote,
            f"refs/tags/{tag}",
            f"refs/tags/{tag}^{{}}",
            timeout=60,
        )
        pairs = (line.split("\t", 1) for line in out.splitlines() if "\t" in line)
        refs = {ref: sha for sha, ref in pairs}
        return refs.get(f"refs/tags/{tag}^{{}}") or refs.get(f"refs/tags/{tag}")

    def fetch(self, remote: str) -> None:
        self.run("fetch", "fetch", "--quiet", remote, "--tags")

    def checkout(self, step: str, ref: str) -> None:
        self.run(step, "checkout", "--quiet", "--detach", ref)

    def checkout_branch(self, step: str, branch: str) -> None:
        self.run(step, "checkout", "--quiet", branch)

    def rev_parse(self, step: str, ref: str) -> str:
        return self.run(step, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").strip()

    def show(self, step: str, ref: str, path: str) -> str:
        return self.run(step, "show", f"{ref}:{path}")
