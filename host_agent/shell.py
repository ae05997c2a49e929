"""Running the project's commands for a step: output captured and reported, failures as `StepFailed`."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from host_agent.errors import StepFailed

LogSink = Callable[[str, list[str]], None]
TAIL = 200


class CommandFailed(StepFailed):
    """A command of the step exited non-zero; `returncode` says how (a contract's exit status)."""

    def __init__(self, step: str, message: str, returncode: int) -> None:
        super().__init__(step, message)
        self.returncode = returncode


def run_command(
    step: str,
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    log: LogSink,
    timeout: float = 1800,
    show_output: bool = True,
    stdin: bytes | None = None,
) -> list[str]:
    log(step, [f"$ {' '.join(argv)}"])
    try:
        done = subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            input=stdin,
            stdin=subprocess.DEVNULL if stdin is None else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise StepFailed(step, f"{argv[0]}: command not found") from None
    except subprocess.TimeoutExpired:
        raise StepFailed(step, f"{argv[0]} did not finish within {timeout:.0f} s") from None
    lines = done.stdout.decode("utf-8", "replace").splitlines()
    if lines and show_output:
        log(step, lines[-TAIL:])
    if done.returncode != 0:
        tail = "\n".join(lines[-15:])
        raise CommandFailed(
            step, f"{describe(argv)} exited with {done.returncode}: {tail}"[-3000:], done.returncode
        )
    return lines


def describe(argv: list[str]) -> str:
    """The command in a few words: the program and its first arguments, without `-f <file>` pairs."""
    words, skip = [Path(argv[0]).name], False
    for arg in argv[1:]:
        if skip:
            skip = False
        elif arg == "-f":
            skip = True
        else:
            words.append(arg)
    shown = " ".join(words[:6])
    return shown if len(words) <= 6 else f"{shown} …"
