"""Python SDK for dualconn: publish events, manage sessions, mint player tokens, and receive
dualconn's webhooks (``dualconn.fastapi`` has a FastAPI router for them)."""

from .client import AsyncDualconnClient, DualconnClient
from .errors import DualconnError, InvalidSignature
from .signatures import SIGNATURE_HEADER, WebhookVerifier, sign, verify_signature
from .tokens import mint_player_token
from .webhooks import (
    CommandReply,
    CommandRequest,
    ConnectGrant,
    ConnectRefused,
    ConnectRequest,
    GreetingEvent,
    LifecycleEvent,
    LifecycleReply,
    OutboundEvent,
)

__all__ = [
    "AsyncDualconnClient",
    "CommandReply",
    "CommandRequest",
    "ConnectGrant",
    "ConnectRefused",
    "ConnectRequest",
    "DualconnClient",
    "DualconnError",
    "GreetingEvent",
    "InvalidSignature",
    "LifecycleEvent",
    "LifecycleReply",
    "OutboundEvent",
    "SIGNATURE_HEADER",
    "WebhookVerifier",
    "mint_player_token",
    "sign",
    "verify_signature",
]
