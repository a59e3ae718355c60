//! The JSON that crosses the network. Field names here are a contract (SPEC §2): add, never
//! rename. Internal types never derive `Serialize` for the network's sake; they are mapped here.

use std::time::SystemTime;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

/// RFC 3339 UTC with milliseconds, the one timestamp format on the wire.
pub fn timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

#[derive(Serialize)]
struct Envelope<'a, D: Serialize + ?Sized> {
    event_type: &'a str,
    timestamp: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sequence_number: Option<u64>,
    player_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    room_id: Option<&'a str>,
    data: &'a D,
}

/// Builds an event's bytes: the one serialization every connection shares (SPEC §3).
pub fn event_bytes<D: Serialize + ?Sized>(
    event_type: &str,
    at: SystemTime,
    sequence_number: Option<u64>,
    player_id: &str,
    room_id: Option<&str>,
    data: &D,
) -> Bytes {
    event_bytes_stamped(
        event_type,
        &timestamp(at),
        sequence_number,
        player_id,
        room_id,
        data,
    )
}

/// As [`event_bytes`], with the timestamp already formatted, so a broadcast formats it once.
pub fn event_bytes_stamped<D: Serialize + ?Sized>(
    event_type: &str,
    timestamp: &str,
    sequence_number: Option<u64>,
    player_id: &str,
    room_id: Option<&str>,
    data: &D,
) -> Bytes {
    let envelope = Envelope {
        event_type,
        timestamp,
        sequence_number,
        player_id,
        room_id,
        data,
    };
    // Room for a typical event, so serializing does not grow the buffer step by step.
    let mut out = Vec::with_capacity(256);
    // Serializing strings, numbers and an already-valid RawValue cannot fail.
    let _ = serde_json::to_writer(&mut out, &envelope);
    Bytes::from(out)
}

/// One event for many players, serialized once: the envelope around `sequence_number` and
/// `player_id`, so each player's bytes are two copies and two numbers, not a serialization.
/// The Redis backplane's scripts and the nodes fill the same template, so history and live
/// delivery carry identical bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTemplate {
    /// `{"event_type":…,"timestamp":…,"sequence_number":`
    pub head: String,
    /// `,"room_id":…,"data":…}` (room only when set)
    pub tail: String,
}

impl EventTemplate {
    pub fn new(event_type: &str, timestamp: &str, room_id: Option<&str>, data: &RawValue) -> Self {
        let mut head = String::with_capacity(96);
        head.push_str("{\"event_type\":");
        push_json_str(&mut head, event_type);
        head.push_str(",\"timestamp\":");
        push_json_str(&mut head, timestamp);
        head.push_str(",\"sequence_number\":");
        let mut tail = String::with_capacity(data.get().len() + 48);
        if let Some(room) = room_id {
            tail.push_str(",\"room_id\":");
            push_json_str(&mut tail, room);
        }
        tail.push_str(",\"data\":");
        tail.push_str(data.get());
        tail.push('}');
        EventTemplate { head, tail }
    }

    /// The player's event: identical to [`event_bytes_stamped`] with the same fields.
    pub fn fill(&self, sequence_number: u64, player_id: &str) -> Bytes {
        let mut out = Vec::with_capacity(self.head.len() + self.tail.len() + player_id.len() + 40);
        out.extend_from_slice(self.head.as_bytes());
        out.extend_from_slice(itoa::Buffer::new().format(sequence_number).as_bytes());
        out.extend_from_slice(b",\"player_id\":");
        let _ = serde_json::to_writer(&mut out, player_id);
        out.extend_from_slice(self.tail.as_bytes());
        Bytes::from(out)
    }
}

fn push_json_str(out: &mut String, s: &str) {
    // Serializing a str into JSON cannot fail.
    if let Ok(quoted) = serde_json::to_string(s) {
        out.push_str(&quoted);
    }
}

/// Connection-local events (SPEC §12.2): never in history, never numbered.
pub mod local {
    pub const CONNECTED: &str = "connected";
    pub const HEARTBEAT: &str = "heartbeat";
    pub const PONG: &str = "pong";
    pub const ERROR: &str = "error";
    pub const RECOVERY: &str = "recovery";
    pub const SESSION_TERMINATED: &str = "session_terminated";
    pub const SERVER_SHUTDOWN: &str = "server_shutdown";
    pub const CONNECTION_REPLACED: &str = "connection_replaced";
    pub const TOKEN_EXPIRED: &str = "token_expired";

    pub const ALL: [&str; 9] = [
        CONNECTED,
        HEARTBEAT,
        PONG,
        ERROR,
        RECOVERY,
        SESSION_TERMINATED,
        SERVER_SHUTDOWN,
        CONNECTION_REPLACED,
        TOKEN_EXPIRED,
    ];
}

/// The lifecycle webhook's body (docs/protocol.md §19). Keys that do not apply to a `type`
/// are left out.
#[derive(Serialize)]
pub struct LifecycleNotice<'a> {
    /// Unique per notice and the same on every retry of it: the backend's deduplication key.
    pub id: &'a str,
    /// `player_online`, `player_offline`, `session_started`, `connection_opened` or
    /// `connection_closed`.
    #[serde(rename = "type")]
    pub kind: &'a str,
    /// When it happened (not when it was sent), RFC 3339 UTC.
    pub timestamp: &'a str,
    /// The player it is about; every notice has one.
    pub player_id: &'a str,
    /// The session a connection joined, or the session that started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<&'a str>,
    /// The connection a notice is about, so a backend can pair opens with closes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<&'a str>,
    /// `websocket` or `sse`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<&'a str>,
    /// Why a connection closed, or what started a session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
}

#[derive(Serialize)]
pub struct ConnectedData<'a> {
    pub connection_id: &'a str,
    pub connection_type: &'a str,
    pub player_id: &'a str,
    pub session_id: &'a str,
    pub heartbeat_interval_ms: u64,
}

#[derive(Serialize)]
pub struct RecoveryData {
    pub recovered: bool,
    pub from_sequence_number: u64,
    pub replayed: usize,
}

#[derive(Serialize)]
pub struct ErrorData<'a> {
    pub error_type: &'a str,
    pub message: &'a str,
    pub details: serde_json::Value,
}

/// The empty object that `heartbeat` and `pong` carry.
#[derive(Serialize)]
pub struct Empty {}

// ---- REST bodies -------------------------------------------------------------------------

/// `{"error": true, ...}`: the one error shape on every HTTP error.
#[derive(Serialize, Deserialize, Debug, ToSchema)]
pub struct ErrorBody {
    /// Always `true`, so a client can tell an error from an answer by one key.
    pub error: bool,
    /// `validation_error`, `authentication_error`, `authorization_error`, `not_found_error`,
    /// `session_error`, `rate_limit_error`, `connection_error` or `system_error`.
    #[schema(example = "validation_error")]
    pub error_type: String,
    /// For people; clients branch on `error_type` and `details`, never on this text.
    pub message: String,
    /// Machine-readable specifics, e.g. `error_code` on 401 or `retry_after_seconds` on 429.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// RFC 3339 UTC with milliseconds.
    pub timestamp: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// 1 to 10000 player ids; give this or `"broadcast": true`, not both.
    #[serde(default)]
    #[schema(min_items = 1, max_items = 10000)]
    pub player_ids: Option<Vec<String>>,
    /// Send to every player online now, instead of `player_ids`.
    #[serde(default)]
    pub broadcast: bool,
    /// `^[A-Za-z0-9_.:-]{1,64}$`, and not one of the connection-local event types.
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    pub event_type: String,
    /// Any JSON; `{}` when absent.
    #[serde(default)]
    #[schema(value_type = Option<serde_json::Value>)]
    pub data: Option<Box<RawValue>>,
    /// Copied into the event envelope for the client's routing.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,128}$")]
    pub room_id: Option<String>,
}

/// `POST /api/rooms/{room_id}/publish`: an event for every member of the room.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoomPublishRequest {
    /// `^[A-Za-z0-9_.:-]{1,64}$`, and not one of the connection-local event types.
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    pub event_type: String,
    /// Any JSON; `{}` when absent.
    #[serde(default)]
    #[schema(value_type = Option<serde_json::Value>)]
    pub data: Option<Box<RawValue>>,
    /// Members who do not get the event, e.g. the one who spoke. At most 10000.
    #[serde(default)]
    #[schema(max_items = 10000)]
    pub except: Vec<String>,
}

/// The answer to joining or leaving a room.
#[derive(Serialize, ToSchema)]
pub struct RoomMembership {
    pub room_id: String,
    pub player_id: String,
    /// Members after the change.
    pub member_count: usize,
}

#[derive(Serialize, ToSchema)]
pub struct RoomInfo {
    pub room_id: String,
    pub member_count: usize,
    /// Members with a connection open on any node.
    pub online_count: usize,
    /// Sorted by `player_id`.
    pub members: Vec<RoomMemberInfo>,
}

#[derive(Serialize, ToSchema)]
pub struct RoomMemberInfo {
    pub player_id: String,
    pub online: bool,
}

#[derive(Serialize, ToSchema)]
pub struct PlayerRooms {
    pub player_id: String,
    /// Sorted.
    pub rooms: Vec<String>,
}

/// How many rooms have members, and how many memberships there are, on every node.
#[derive(Serialize, ToSchema)]
pub struct RoomFigures {
    pub total_rooms: usize,
    pub total_memberships: usize,
}

#[derive(Serialize, ToSchema)]
pub struct PublishResponse {
    pub success: bool,
    pub events: Vec<PublishedEvent>,
    pub timestamp: String,
}

#[derive(Serialize, ToSchema)]
pub struct PublishedEvent {
    pub player_id: String,
    /// The event's number in this player's stream (the SSE `id:`).
    pub sequence_number: u64,
    /// Connections the event was queued on; 0 when the player is offline (it is still kept
    /// in history for resume).
    pub connections: usize,
}

#[derive(Serialize, ToSchema)]
pub struct NewSessionResponse {
    pub success: bool,
    pub message: &'static str,
    pub session_id: String,
    pub previous_connections_disconnected: usize,
    pub timestamp: String,
}

#[derive(Serialize, ToSchema)]
pub struct SessionInfo {
    pub player_id: String,
    pub session_id: String,
    pub session_created: String,
    pub active_connections: usize,
    pub connection_types: Vec<&'static str>,
}

#[derive(Serialize, ToSchema)]
pub struct ConnectionInfo {
    pub player_id: String,
    pub session_id: Option<String>,
    pub connections: TransportConnections,
    pub presence: Presence,
    pub health: PlayerHealth,
}

#[derive(Serialize, ToSchema)]
pub struct TransportConnections {
    pub websocket: TransportInfo,
    pub sse: TransportInfo,
}

#[derive(Serialize, ToSchema)]
pub struct TransportInfo {
    pub count: usize,
    pub connection_ids: Vec<String>,
    pub last_activity: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Presence {
    pub status: &'static str,
    pub last_seen: Option<String>,
    pub total_connections: usize,
}

#[derive(Serialize, ToSchema)]
pub struct PlayerHealth {
    pub overall_health: &'static str,
    pub websocket_health: &'static str,
    pub sse_health: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct StatsResponse {
    pub total_players: usize,
    pub total_connections: usize,
    pub connection_distribution: ConnectionDistribution,
    pub session_statistics: SessionStatistics,
    pub health_statistics: HealthStatistics,
}

#[derive(Serialize, ToSchema)]
pub struct ConnectionDistribution {
    pub websocket_only: usize,
    pub sse_only: usize,
    pub dual_connections: usize,
}

#[derive(Serialize, ToSchema)]
pub struct SessionStatistics {
    pub total_sessions: usize,
    pub average_connections_per_session: f64,
}

#[derive(Serialize, ToSchema)]
pub struct HealthStatistics {
    pub healthy_connections: usize,
    pub unhealthy_connections: usize,
    pub health_percentage: f64,
}

// ---- Monitoring (reference "Monitoring Endpoints") -----------------------------------------

#[derive(Serialize, ToSchema)]
pub struct DualConnectionsResponse {
    pub connection_distribution: DualDistribution,
    pub connection_health: HealthFigures,
    pub session_analytics: SessionAnalytics,
    pub rooms: RoomFigures,
}

#[derive(Serialize, ToSchema)]
pub struct DualDistribution {
    pub total_players: usize,
    pub dual_connection_players: usize,
    pub websocket_only_players: usize,
    pub sse_only_players: usize,
    pub dual_connection_percentage: f64,
}

#[derive(Serialize, ToSchema)]
pub struct HealthFigures {
    pub total_connections: usize,
    pub healthy_connections: usize,
    pub unhealthy_connections: usize,
    pub health_percentage: f64,
}

#[derive(Serialize, ToSchema)]
pub struct SessionAnalytics {
    pub total_sessions: usize,
    pub sessions_with_connections: usize,
    pub average_connections_per_session: f64,
}

#[derive(Serialize, ToSchema)]
pub struct PerformanceResponse {
    pub connection_establishment: EstablishmentFigures,
    pub message_delivery: DeliveryFigures,
    pub node_budget: BudgetFigures,
    pub rooms: RoomFigures,
    pub timestamp: String,
}

/// SPEC §12.27: how full the node is, against its two bounds.
#[derive(Serialize, ToSchema)]
pub struct BudgetFigures {
    pub connections: usize,
    pub max_connections: usize,
    pub queued_bytes: usize,
    pub max_queued_bytes: usize,
    /// Streams refused with 503 since start, by the bound that was reached.
    pub refused_streams_connections: u64,
    pub refused_streams_queued_bytes: u64,
    /// Connections closed (4008) to bring the queued bytes back under their bound.
    pub shed_connections: u64,
}

#[derive(Serialize, ToSchema)]
pub struct EstablishmentFigures {
    pub total_connections: u64,
    pub websocket_connections: u64,
    pub sse_connections: u64,
    pub avg_websocket_establishment_ms: f64,
    pub avg_sse_establishment_ms: f64,
    pub max_websocket_establishment_ms: f64,
    pub max_sse_establishment_ms: f64,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryFigures {
    pub total_messages_sent: u64,
    pub successful_deliveries: u64,
    pub failed_deliveries: u64,
    pub delivery_success_rate: f64,
    /// Not in the reference: connections closed because they fell behind (SPEC §6).
    pub slow_consumer_disconnects: u64,
}

#[derive(Serialize, ToSchema)]
pub struct ConnectionHealthResponse {
    pub overall_health: HealthFigures,
    pub connection_type_health: TypeHealth,
    pub health_trends: HealthTrendFigures,
}

#[derive(Serialize, ToSchema)]
pub struct TypeHealth {
    pub websocket: TypeHealthFigures,
    pub sse: TypeHealthFigures,
}

#[derive(Serialize, ToSchema)]
pub struct TypeHealthFigures {
    pub total: usize,
    pub healthy: usize,
    pub unhealthy: usize,
    pub health_percentage: f64,
}

#[derive(Serialize, ToSchema)]
pub struct HealthTrendFigures {
    pub last_hour_health_percentage: f64,
    pub last_24_hours_health_percentage: f64,
}

/// `GET /monitoring/players`: not in the reference; the dashboard's player list.
#[derive(Serialize, ToSchema)]
pub struct PlayersResponse {
    pub players: Vec<PlayerEntry>,
    pub total_players: usize,
    pub truncated: bool,
}

#[derive(Serialize, ToSchema)]
pub struct PlayerEntry {
    pub player_id: String,
    pub session_id: Option<String>,
    pub overall_health: &'static str,
    pub connections: Vec<ConnectionEntry>,
}

#[derive(Serialize, ToSchema)]
pub struct ConnectionEntry {
    pub connection_id: String,
    pub connection_type: &'static str,
    pub healthy: bool,
    pub last_activity: String,
    pub opened_at: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DevTokenRequest {
    #[schema(pattern = "^[A-Za-z0-9_.:@-]{1,128}$")]
    pub player_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct DevTokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
}

// ---- Inbound frames (SPEC §7) -------------------------------------------------------------

/// A player's message, in either of its two forms, after unwrapping.
#[derive(Debug, PartialEq)]
pub struct Inbound {
    pub kind: InboundKind,
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundKind {
    Ping,
    Command,
    GameCommand,
    Chat,
}

impl InboundKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InboundKind::Ping => "ping",
            InboundKind::Command => "command",
            InboundKind::GameCommand => "game_command",
            InboundKind::Chat => "chat",
        }
    }
}

/// Why an inbound frame could not be understood; the socket stays open.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    #[error("the message is not valid JSON")]
    BadJson,
    #[error("the message must be an object with a `type` or a `message` field")]
    BadShape,
    #[error("unknown message type `{0}`")]
    UnknownType(String),
}

#[derive(Deserialize)]
struct RawInbound {
    #[serde(rename = "type")]
    kind: Option<serde_json::Value>,
    #[serde(default)]
    data: Option<serde_json::Value>,
    message: Option<serde_json::Value>,
}

/// Parses `{"type", "data"}` or the wrapped `{"message": "<json>", "timestamp"}`. When both
/// `type` and `message` are present, the direct form wins (SPEC §12.17).
pub fn parse_inbound(text: &str) -> Result<Inbound, InboundError> {
    parse_inbound_at(text, 0)
}

fn parse_inbound_at(text: &str, depth: u8) -> Result<Inbound, InboundError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|_| InboundError::BadJson)?;
    if !value.is_object() {
        return Err(InboundError::BadShape);
    }
    let raw: RawInbound = serde_json::from_value(value).map_err(|_| InboundError::BadShape)?;
    match (raw.kind, raw.message) {
        (Some(serde_json::Value::String(kind)), _) => {
            let kind = match kind.as_str() {
                "ping" => InboundKind::Ping,
                "command" => InboundKind::Command,
                "game_command" => InboundKind::GameCommand,
                "chat" => InboundKind::Chat,
                _ => return Err(InboundError::UnknownType(truncate(&kind, 64))),
            };
            let data = raw.data.unwrap_or(serde_json::Value::Null);
            Ok(Inbound { kind, data })
        }
        (Some(_), _) => Err(InboundError::BadShape),
        // One level of wrapping only: a message that wraps a wrapper is refused.
        (None, Some(serde_json::Value::String(inner))) if depth == 0 => parse_inbound_at(&inner, 1),
        _ => Err(InboundError::BadShape),
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filled_template_is_byte_for_byte_the_serialized_envelope() {
        let data = RawValue::from_string(r#"{"text":"a \"quoted\" line\n"}"#.into()).unwrap();
        for room in [None, Some("hall:1")] {
            for (event_type, player) in [("chat", "p1"), ("odd\"type", "x.y@z-9")] {
                let t = EventTemplate::new(event_type, "2025-01-06T19:55:00.123Z", room, &data);
                assert_eq!(
                    t.fill(9_007_199_254_740_991, player),
                    event_bytes_stamped(
                        event_type,
                        "2025-01-06T19:55:00.123Z",
                        Some(9_007_199_254_740_991),
                        player,
                        room,
                        &*data,
                    )
                );
            }
        }
    }

    #[test]
    fn envelope_has_the_spec_fields_and_omits_a_missing_room() {
        let data = RawValue::from_string(r#"{"text":"hi"}"#.into()).unwrap();
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_736_193_300_123);
        let bytes = event_bytes("chat", at, Some(42), "p1", None, &*data);
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"event_type":"chat","timestamp":"2025-01-06T19:55:00.123Z","sequence_number":42,"player_id":"p1","data":{"text":"hi"}}"#
        );
        let local = event_bytes("pong", at, None, "p1", Some("hall"), &Empty {});
        assert_eq!(
            std::str::from_utf8(&local).unwrap(),
            r#"{"event_type":"pong","timestamp":"2025-01-06T19:55:00.123Z","player_id":"p1","room_id":"hall","data":{}}"#
        );
    }

    #[test]
    fn inbound_forms() {
        assert_eq!(
            parse_inbound(r#"{"type":"ping"}"#).unwrap().kind,
            InboundKind::Ping
        );
        let wrapped = parse_inbound(
            r#"{"message":"{\"type\":\"command\",\"data\":{\"command\":\"look\"}}","timestamp":1}"#,
        )
        .unwrap();
        assert_eq!(wrapped.kind, InboundKind::Command);
        assert_eq!(wrapped.data["command"], "look");
        // Direct form wins over the wrapper.
        assert_eq!(
            parse_inbound(r#"{"type":"chat","message":"{\"type\":\"ping\"}"}"#)
                .unwrap()
                .kind,
            InboundKind::Chat
        );
        assert_eq!(parse_inbound("{nope"), Err(InboundError::BadJson));
        assert_eq!(parse_inbound("[1]"), Err(InboundError::BadShape));
        assert_eq!(
            parse_inbound(r#"{"type":"dance"}"#),
            Err(InboundError::UnknownType("dance".into()))
        );
        assert_eq!(
            parse_inbound(r#"{"message":"{\"message\":\"{}\"}"}"#),
            Err(InboundError::BadShape)
        );
    }

    proptest::proptest! {
        #[test]
        fn inbound_parser_never_panics(s in ".*") {
            let _ = parse_inbound(&s);
        }
    }
}
