"""The bodies of dualconn's webhooks and of the answers it expects, as typed values.

- Command webhook (``DUALCONN_COMMAND_WEBHOOK``): dualconn POSTs a :class:`CommandRequest`;
  answer with :class:`CommandReply` (events for any players).
- Connect webhook (``DUALCONN_CONNECT_WEBHOOK``): dualconn POSTs the credentials it could not
  verify itself as a :class:`ConnectRequest`; answer with a :class:`ConnectGrant`, or refuse
  with 401 or 403 (:class:`ConnectRefused` in the FastAPI helper).
- Lifecycle webhook (``DUALCONN_LIFECYCLE_WEBHOOK``): dualconn POSTs a :class:`LifecycleEvent`
  when a player comes online or goes offline, a session starts, or a connection opens or closes;
  the answer to ``player_online`` and ``session_started`` may be a :class:`LifecycleReply` of
  events for the player. Delivery is at least once: deduplicate on ``id``.

Parse only bodies whose signature checked out (:mod:`dualconn.signatures`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Optional, Sequence, Union, cast

Transport = Literal["websocket", "sse", "http"]
LifecycleType = Literal[
    "player_online", "player_offline", "session_started", "connection_opened", "connection_closed"
]
_LIFECYCLE_TYPES = (
    "player_online",
    "player_offline",
    "session_started",
    "connection_opened",
    "connection_closed",
)


def _object(body: Union[bytes, str, Mapping[str, Any]]) -> Mapping[str, Any]:
    value = json.loads(body) if isinstance(body, (bytes, str)) else body
    if not isinstance(value, dict):
        raise ValueError("a webhook body is a JSON object")
    return cast(Mapping[str, Any], value)


def _optional_str(obj: Mapping[str, Any], key: str) -> Optional[str]:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key} must be a string or null")
    return value


def _str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    return value


@dataclass(frozen=True)
class CommandRequest:
    """A player's command, as the command webhook receives it."""

    player_id: str
    session_id: Optional[str]
    #: The WebSocket it came over; None for ``POST /api/commands``.
    connection_id: Optional[str]
    #: The verb: the first word of ``data.command``, lower-cased (``say`` for chat).
    command: str
    args: list[str]
    #: The message's ``data`` as the player sent it.
    data: Any

    @classmethod
    def parse(cls, body: Union[bytes, str, Mapping[str, Any]]) -> "CommandRequest":
        obj = _object(body)
        args = obj.get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ValueError("args must be a list of strings")
        return cls(
            player_id=_str(obj, "player_id"),
            session_id=_optional_str(obj, "session_id"),
            connection_id=_optional_str(obj, "connection_id"),
            command=_str(obj, "command"),
            args=list(args),
            data=obj.get("data"),
        )


@dataclass
class OutboundEvent:
    """An event a webhook answer asks dualconn to deliver to players."""

    player_ids: Sequence[str]
    event_type: str
    data: Any = field(default_factory=dict)
    room_id: Optional[str] = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "player_ids": list(self.player_ids),
            "event_type": self.event_type,
            "data": self.data,
        }
        if self.room_id is not None:
            out["room_id"] = self.room_id
        return out


@dataclass
class CommandReply:
    """The command webhook's answer."""

    events: Sequence[OutboundEvent] = ()

    def to_json(self) -> dict[str, Any]:
        return {"events": [e.to_json() for e in self.events]}


@dataclass(frozen=True)
class ConnectRequest:
    """Credentials dualconn could not verify itself; the backend says who this is.

    ``token`` and ``cookie`` are secrets: they are left out of ``repr`` so that logging a
    request never logs them.
    """

    #: The bearer credential, from the subprotocol, ``Authorization`` or ``?token=``.
    token: Optional[str] = field(repr=False)
    #: The ``Cookie`` header, for games that sign browsers in with a cookie.
    cookie: Optional[str] = field(repr=False)
    #: ``websocket`` or ``sse`` for a stream, ``http`` for a REST call.
    transport: Transport
    #: The player a path names (``/sse/{player_id}``), unverified; None when none does.
    player_id: Optional[str]
    remote_addr: str

    @classmethod
    def parse(cls, body: Union[bytes, str, Mapping[str, Any]]) -> "ConnectRequest":
        obj = _object(body)
        transport = _str(obj, "transport")
        if transport not in ("websocket", "sse", "http"):
            raise ValueError("transport must be websocket, sse or http")
        return cls(
            token=_optional_str(obj, "token"),
            cookie=_optional_str(obj, "cookie"),
            transport=cast(Transport, transport),
            player_id=_optional_str(obj, "player_id"),
            remote_addr=_str(obj, "remote_addr"),
        )


@dataclass
class GreetingEvent:
    """An event for the connecting player, delivered after ``connected``: numbered, kept in
    history and sent on every connection of the player, like a publish."""

    event_type: str
    data: Any = field(default_factory=dict)
    room_id: Optional[str] = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event_type": self.event_type, "data": self.data}
        if self.room_id is not None:
            out["room_id"] = self.room_id
        return out


@dataclass
class ConnectGrant:
    """The connect webhook's yes: who the player is, until when, and what to greet them with."""

    player_id: str
    #: Unix seconds after which the player's connections end (as a JWT's ``exp``); None for
    #: no limit of the backend's own.
    expires_at: Optional[int] = None
    #: Only for streams: a REST call authenticated this way ignores them.
    events: Sequence[GreetingEvent] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"player_id": self.player_id}
        if self.expires_at is not None:
            out["expires_at"] = self.expires_at
        if self.events:
            out["events"] = [e.to_json() for e in self.events]
        return out


class ConnectRefused(Exception):
    """Raised by a connect callback to refuse: 401 (bad credentials) or 403 (not allowed)."""

    def __init__(self, status: Literal[401, 403] = 401, message: str = "refused") -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class LifecycleEvent:
    """Something that happened to a player, as the lifecycle webhook tells it.

    The same notice may arrive more than once (a retry after a slow answer), always with the
    same ``id``: act on an ``id`` once.
    """

    #: Unique per notice, the same on every retry: the deduplication key.
    id: str
    type: LifecycleType
    #: When it happened (RFC 3339, UTC), not when it was sent.
    timestamp: str
    player_id: str
    session_id: Optional[str] = None
    #: For connection notices, and the connection that brought the player online.
    connection_id: Optional[str] = None
    #: ``websocket`` or ``sse``, with ``connection_id``.
    transport: Optional[Literal["websocket", "sse"]] = None
    #: ``connection_closed``: why (``client_closed``, ``session_replaced``, ...);
    #: ``session_started``: ``connect`` or ``new_session``.
    reason: Optional[str] = None

    @classmethod
    def parse(cls, body: Union[bytes, str, Mapping[str, Any]]) -> "LifecycleEvent":
        obj = _object(body)
        kind = _str(obj, "type")
        if kind not in _LIFECYCLE_TYPES:
            raise ValueError(f"unknown lifecycle type {kind!r}")
        transport = _optional_str(obj, "transport")
        if transport not in (None, "websocket", "sse"):
            raise ValueError("transport must be websocket or sse")
        return cls(
            id=_str(obj, "id"),
            type=cast(LifecycleType, kind),
            timestamp=_str(obj, "timestamp"),
            player_id=_str(obj, "player_id"),
            session_id=_optional_str(obj, "session_id"),
            connection_id=_optional_str(obj, "connection_id"),
            transport=cast(Optional[Literal["websocket", "sse"]], transport),
            reason=_optional_str(obj, "reason"),
        )


@dataclass
class LifecycleReply:
    """The answer to a lifecycle notice. Only ``player_online`` and ``session_started`` may
    carry events; they are published to the player after ``connected``, numbered and kept in
    history. Other notices' answers are ignored."""

    events: Sequence[GreetingEvent] = ()

    def to_json(self) -> dict[str, Any]:
        return {"events": [e.to_json() for e in self.events]}
