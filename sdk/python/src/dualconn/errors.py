"""Errors raised by the SDK."""

from __future__ import annotations

from typing import Any, Mapping


class DualconnError(Exception):
    """The server refused a request; it carries the server's error envelope.

    ``error_type`` is one of the envelope's types (``validation_error``,
    ``authentication_error``, ``rate_limit_error``, ...), ``http_error`` for an answer that
    was not the envelope, or ``network_error`` when no answer came (``status`` is then 0).
    """

    def __init__(
        self,
        status: int,
        error_type: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {error_type}: {message}")
        self.status = status
        self.error_type = error_type
        self.message = message
        self.details: Mapping[str, Any] = details or {}
        self.retry_after = retry_after


class InvalidSignature(Exception):
    """A webhook body whose ``X-Dualconn-Signature`` does not match the shared secret."""
