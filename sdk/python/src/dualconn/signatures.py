"""Checking that a webhook request came from dualconn.

Every webhook dualconn sends (commands, connect, and any added later) is signed the same way:
``X-Dualconn-Signature: sha256=<hex HMAC-SHA256 of the raw body>`` with the shared secret.
Check the raw bytes before parsing them.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Optional

from .errors import InvalidSignature

SIGNATURE_HEADER = "X-Dualconn-Signature"


def sign(secret: str | bytes, body: bytes) -> str:
    """The header value dualconn sends for ``body``."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify_signature(secret: str | bytes, body: bytes, header: Optional[str]) -> bool:
    """True when ``header`` is dualconn's signature of ``body``; compared in constant time."""
    if not header:
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().encode())


class WebhookVerifier:
    """Holds the shared secret; ``verify`` raises :class:`InvalidSignature` on a mismatch."""

    def __init__(self, secret: str | bytes) -> None:
        self._secret = secret

    def verify(self, body: bytes, header: Optional[str]) -> None:
        if not verify_signature(self._secret, body, header):
            raise InvalidSignature("the X-Dualconn-Signature header does not match the body")
