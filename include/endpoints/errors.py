"""What can go wrong with an endpoint, on either backend (one set of exceptions for the whole package)."""

from __future__ import annotations


class EndpointError(RuntimeError):
    """An endpoint could not be started, reached or stopped."""


class EndpointStartError(EndpointError):
    """The server exited or did not become healthy; the message ends with its log tail."""


class InvocationError(EndpointError):
    """The endpoint answered an error status; ``status`` and the server's ``message`` are kept."""

    def __init__(self, url: str, status: int, message: str) -> None:
        super().__init__(f"{url} answered {status}: {message}")
        self.status = status
        self.message = message


class EndpointNotFoundError(ValueError):
    """No endpoint of that name is recorded (local) or exists (SageMaker)."""
