"""The agent's one domain error type; `DeliveryError.permanent` says whether sending a report
again may help (nothing else asks that question of the others)."""

from __future__ import annotations


class AgentError(Exception):
    pass


class ConfigError(AgentError):
    """The agent's configuration is unusable; the message names the variable or flag."""


class TriggerRejected(AgentError):
    """A trigger failed verification; `reason` is reported to the backend."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StepFailed(AgentError):
    """A step could not complete; the run stops and (past `deploy`) rolls back."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.message = message


class DeliveryError(AgentError):
    """The backend did not accept a report. Transient unless the backend refused it for good."""

    def __init__(self, message: str, *, permanent: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.status = status
