"""The shapes of dualconn's REST answers, for type checkers (they are plain dicts at run time)."""

from __future__ import annotations

from typing import List, Literal, Optional, TypedDict

Health = Literal["healthy", "degraded", "unhealthy", "no_connections"]


class PublishedEvent(TypedDict):
    player_id: str
    sequence_number: int
    #: Connections of this node the event was queued on.
    connections: int


class PublishResult(TypedDict):
    success: bool
    events: List[PublishedEvent]
    timestamp: str


class NewSession(TypedDict):
    success: bool
    message: str
    session_id: str
    previous_connections_disconnected: int
    timestamp: str


class SessionInfo(TypedDict):
    player_id: str
    session_id: str
    session_created: str
    active_connections: int
    connection_types: List[str]


class TransportInfo(TypedDict):
    count: int
    connection_ids: List[str]
    last_activity: Optional[str]


class TransportConnections(TypedDict):
    websocket: TransportInfo
    sse: TransportInfo


class Presence(TypedDict):
    status: Literal["online", "offline"]
    last_seen: Optional[str]
    total_connections: int


class PlayerHealth(TypedDict):
    overall_health: Health
    websocket_health: Health
    sse_health: Health


class ConnectionInfo(TypedDict):
    player_id: str
    session_id: Optional[str]
    connections: TransportConnections
    presence: Presence
    health: PlayerHealth


class ConnectionDistribution(TypedDict):
    websocket_only: int
    sse_only: int
    dual_connections: int


class SessionStatistics(TypedDict):
    total_sessions: int
    average_connections_per_session: float


class HealthStatistics(TypedDict):
    healthy_connections: int
    unhealthy_connections: int
    health_percentage: float


class Stats(TypedDict):
    total_players: int
    total_connections: int
    connection_distribution: ConnectionDistribution
    session_statistics: SessionStatistics
    health_statistics: HealthStatistics


class RoomMembership(TypedDict):
    room_id: str
    player_id: str
    #: Members after the change.
    member_count: int


class RoomMember(TypedDict):
    player_id: str
    #: A connection open on any node.
    online: bool


class RoomInfo(TypedDict):
    room_id: str
    member_count: int
    online_count: int
    #: Sorted by ``player_id``.
    members: List[RoomMember]


class PlayerRooms(TypedDict):
    player_id: str
    #: Sorted.
    rooms: List[str]
