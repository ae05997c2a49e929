"""The one error type of the channel transports."""

from __future__ import annotations


class DeliveryError(Exception):
    """A channel could not take a notice. The message is one sentence for the admin, with
    no secret in it; `permanent` means retrying cannot help (a 4xx answer, a refused
    redirect, a URL the transport cannot use), otherwise the task retries with backoff."""

    def __init__(self, message: str, *, permanent: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.status = status

    def __str__(self) -> str:
        return self.message
