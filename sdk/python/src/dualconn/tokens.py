"""Player tokens: what a game backend hands its players so they can connect."""

from __future__ import annotations

import time
from typing import Any, Mapping

import jwt


def mint_player_token(
    secret: str | bytes,
    player_id: str,
    *,
    ttl_seconds: int = 3600,
    player_claim: str = "sub",
    audience: str | None = None,
    issuer: str | None = None,
    admin: bool = False,
    extra_claims: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> str:
    """An HS256 token dualconn accepts for ``player_id``.

    ``secret`` is the server's ``DUALCONN_JWT_SECRET``. ``player_claim`` must match
    ``DUALCONN_JWT_PLAYER_CLAIM`` (``sub`` by default); ``audience`` and ``issuer`` must match
    ``DUALCONN_JWT_AUDIENCE`` / ``DUALCONN_JWT_ISSUER`` when those are set. ``extra_claims``
    are added as they are, for the game's own use.
    """
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = dict(extra_claims or {})
    claims[player_claim] = player_id
    claims["iat"] = issued
    claims["exp"] = issued + ttl_seconds
    if audience is not None:
        claims["aud"] = audience
    if issuer is not None:
        claims["iss"] = issuer
    if admin:
        claims["role"] = "admin"
    return jwt.encode(claims, secret, algorithm="HS256")
