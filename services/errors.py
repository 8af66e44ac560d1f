"""Errors the services raise for the handlers to turn into HTTP responses."""

from __future__ import annotations


class ServiceError(Exception):
    """A failure with a stable snake_case code and a sentence for the client."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class InvalidInput(ServiceError):
    """The request names or carries a value the service does not accept."""


class NotFound(ServiceError):
    """The request names something that does not exist."""
