"""REST clients for a game backend: :class:`DualconnClient` (sync) and
:class:`AsyncDualconnClient` (asyncio), with the same methods.

Both authenticate with an admin API key (``DUALCONN_ADMIN_KEYS``) and raise
:class:`~dualconn.errors.DualconnError` with the server's error envelope when refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, TypeVar, cast
from urllib.parse import quote

import httpx

from .errors import DualconnError
from .models import (
    ConnectionInfo,
    NewSession,
    PlayerRooms,
    PublishResult,
    RoomInfo,
    RoomMembership,
    SessionInfo,
    Stats,
)

T = TypeVar("T")

DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True)
class _Call:
    """One request, described once and sent by either client."""

    method: str
    path: str
    json: Optional[Mapping[str, Any]] = None


def _player_path(player_id: str, rest: str = "") -> str:
    return f"/api/connections/{quote(player_id, safe='')}{rest}"


def _publish(
    player_ids: Optional[Sequence[str]],
    event_type: str,
    data: Any,
    room_id: Optional[str],
) -> _Call:
    body: dict[str, Any] = {"event_type": event_type, "data": {} if data is None else data}
    if player_ids is None:
        body["broadcast"] = True
    else:
        if isinstance(player_ids, str):
            raise TypeError("player_ids is a list of ids, not one id")
        body["player_ids"] = list(player_ids)
    if room_id is not None:
        body["room_id"] = room_id
    return _Call("POST", "/api/publish", body)


def _member_path(room_id: str, player_id: str) -> str:
    return f"/api/rooms/{quote(room_id, safe='')}/members/{quote(player_id, safe='')}"


def _room_publish(
    room_id: str, event_type: str, data: Any, except_players: Optional[Sequence[str]]
) -> _Call:
    if isinstance(except_players, str):
        raise TypeError("except_players is a list of ids, not one id")
    body: dict[str, Any] = {
        "event_type": event_type,
        "data": {} if data is None else data,
        "except": list(except_players or []),
    }
    return _Call("POST", f"/api/rooms/{quote(room_id, safe='')}/publish", body)


def _new_session(player_id: str, session_id: Optional[str]) -> _Call:
    body = {} if session_id is None else {"session_id": session_id}
    return _Call("POST", _player_path(player_id, "/session"), body)


def _result(response: httpx.Response) -> Any:
    if response.is_success:
        return response.json()
    retry_after: Optional[float] = None
    if "retry-after" in response.headers:
        try:
            retry_after = float(response.headers["retry-after"])
        except ValueError:
            retry_after = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("error") is True:
        raise DualconnError(
            response.status_code,
            str(body.get("error_type", "http_error")),
            str(body.get("message", "")),
            body.get("details") if isinstance(body.get("details"), dict) else None,
            retry_after,
        )
    raise DualconnError(response.status_code, "http_error", response.text[:200], None, retry_after)


def _headers(admin_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {admin_key}"}


class DualconnClient:
    """Synchronous client. Use as a context manager, or call :meth:`close`."""

    def __init__(
        self,
        base_url: str,
        admin_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        http: Optional[httpx.Client] = None,
    ) -> None:
        self._http = http or httpx.Client(
            base_url=base_url, headers=_headers(admin_key), timeout=timeout
        )

    def _send(self, call: _Call) -> Any:
        try:
            response = self._http.request(call.method, call.path, json=call.json)
        except httpx.TransportError as e:
            raise DualconnError(0, "network_error", str(e)) from e
        return _result(response)

    def publish(
        self,
        player_ids: Sequence[str],
        event_type: str,
        data: Any = None,
        *,
        room_id: Optional[str] = None,
    ) -> PublishResult:
        """Delivers one event to each named player's stream (numbered per player)."""
        return cast(PublishResult, self._send(_publish(player_ids, event_type, data, room_id)))

    def broadcast(
        self, event_type: str, data: Any = None, *, room_id: Optional[str] = None
    ) -> PublishResult:
        """Delivers one event to every player connected now."""
        return cast(PublishResult, self._send(_publish(None, event_type, data, room_id)))

    def new_session(self, player_id: str, session_id: Optional[str] = None) -> NewSession:
        """Starts a session (the server makes the id unless given); the player's connections
        get ``session_terminated`` and end."""
        return cast(NewSession, self._send(_new_session(player_id, session_id)))

    def get_session(self, player_id: str) -> SessionInfo:
        return cast(SessionInfo, self._send(_Call("GET", _player_path(player_id, "/session"))))

    def connection_info(self, player_id: str) -> ConnectionInfo:
        """The player's connections by transport, presence and health."""
        return cast(ConnectionInfo, self._send(_Call("GET", _player_path(player_id))))

    def stats(self) -> Stats:
        return cast(Stats, self._send(_Call("GET", "/api/connections/stats")))

    def join_room(self, room_id: str, player_id: str) -> RoomMembership:
        """Puts the player in the room (idempotent). Membership is the player's: it outlives
        connections and sessions. Past a cap, :class:`DualconnError` with status 409."""
        return cast(RoomMembership, self._send(_Call("PUT", _member_path(room_id, player_id))))

    def leave_room(self, room_id: str, player_id: str) -> RoomMembership:
        """Takes the player out of the room (idempotent)."""
        return cast(RoomMembership, self._send(_Call("DELETE", _member_path(room_id, player_id))))

    def room(self, room_id: str) -> RoomInfo:
        """The room's members, each online or not; an unknown room has none."""
        return cast(RoomInfo, self._send(_Call("GET", f"/api/rooms/{quote(room_id, safe='')}")))

    def player_rooms(self, player_id: str) -> PlayerRooms:
        path = f"/api/players/{quote(player_id, safe='')}/rooms"
        return cast(PlayerRooms, self._send(_Call("GET", path)))

    def publish_to_room(
        self,
        room_id: str,
        event_type: str,
        data: Any = None,
        *,
        except_players: Optional[Sequence[str]] = None,
    ) -> PublishResult:
        """Delivers one event to each member's own stream, with ``room_id`` set; members in
        ``except_players`` (the speaker, say) are skipped."""
        call = _room_publish(room_id, event_type, data, except_players)
        return cast(PublishResult, self._send(call))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "DualconnClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncDualconnClient:
    """The same methods as :class:`DualconnClient`, as coroutines."""

    def __init__(
        self,
        base_url: str,
        admin_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        http: Optional[httpx.AsyncClient] = None,
    ) -> None:
        self._http = http or httpx.AsyncClient(
            base_url=base_url, headers=_headers(admin_key), timeout=timeout
        )

    async def _send(self, call: _Call) -> Any:
        try:
            response = await self._http.request(call.method, call.path, json=call.json)
        except httpx.TransportError as e:
            raise DualconnError(0, "network_error", str(e)) from e
        return _result(response)

    async def publish(
        self,
        player_ids: Sequence[str],
        event_type: str,
        data: Any = None,
        *,
        room_id: Optional[str] = None,
    ) -> PublishResult:
        return cast(
            PublishResult, await self._send(_publish(player_ids, event_type, data, room_id))
        )

    async def broadcast(
        self, event_type: str, data: Any = None, *, room_id: Optional[str] = None
    ) -> PublishResult:
        return cast(PublishResult, await self._send(_publish(None, event_type, data, room_id)))

    async def new_session(self, player_id: str, session_id: Optional[str] = None) -> NewSession:
        return cast(NewSession, await self._send(_new_session(player_id, session_id)))

    async def get_session(self, player_id: str) -> SessionInfo:
        return cast(
            SessionInfo, await self._send(_Call("GET", _player_path(player_id, "/session")))
        )

    async def connection_info(self, player_id: str) -> ConnectionInfo:
        return cast(ConnectionInfo, await self._send(_Call("GET", _player_path(player_id))))

    async def stats(self) -> Stats:
        return cast(Stats, await self._send(_Call("GET", "/api/connections/stats")))

    async def join_room(self, room_id: str, player_id: str) -> RoomMembership:
        call = _Call("PUT", _member_path(room_id, player_id))
        return cast(RoomMembership, await self._send(call))

    async def leave_room(self, room_id: str, player_id: str) -> RoomMembership:
        call = _Call("DELETE", _member_path(room_id, player_id))
        return cast(RoomMembership, await self._send(call))

    async def room(self, room_id: str) -> RoomInfo:
        call = _Call("GET", f"/api/rooms/{quote(room_id, safe='')}")
        return cast(RoomInfo, await self._send(call))

    async def player_rooms(self, player_id: str) -> PlayerRooms:
        call = _Call("GET", f"/api/players/{quote(player_id, safe='')}/rooms")
        return cast(PlayerRooms, await self._send(call))

    async def publish_to_room(
        self,
        room_id: str,
        event_type: str,
        data: Any = None,
        *,
        except_players: Optional[Sequence[str]] = None,
    ) -> PublishResult:
        call = _room_publish(room_id, event_type, data, except_players)
        return cast(PublishResult, await self._send(call))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncDualconnClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
