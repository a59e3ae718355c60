//! The JSON that crosses the network. Field names here are a contract (SPEC §2): add, never
//! rename. Internal types never derive `Serialize` for the network's sake; they are mapped here.

use std::time::SystemTime;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

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
#[derive(Serialize, Deserialize, Debug)]
pub struct ErrorBody {
    pub error: bool,
    pub error_type: String,
    pub message: String,
    pub details: serde_json::Value,
    pub timestamp: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    #[serde(default)]
    pub player_ids: Option<Vec<String>>,
    #[serde(default)]
    pub broadcast: bool,
    pub event_type: String,
    #[serde(default)]
    pub data: Option<Box<RawValue>>,
    #[serde(default)]
    pub room_id: Option<String>,
}

#[derive(Serialize)]
pub struct PublishResponse {
    pub success: bool,
    pub events: Vec<PublishedEvent>,
    pub timestamp: String,
}

#[derive(Serialize)]
pub struct PublishedEvent {
    pub player_id: String,
    pub sequence_number: u64,
    pub connections: usize,
}

#[derive(Serialize)]
pub struct NewSessionResponse {
    pub success: bool,
    pub message: &'static str,
    pub session_id: String,
    pub previous_connections_disconnected: usize,
    pub timestamp: String,
}

#[derive(Serialize)]
pub struct SessionInfo {
    pub player_id: String,
    pub session_id: String,
    pub session_created: String,
    pub active_connections: usize,
    pub connection_types: Vec<&'static str>,
}

#[derive(Serialize)]
pub struct ConnectionInfo {
    pub player_id: String,
    pub session_id: Option<String>,
    pub connections: TransportConnections,
    pub presence: Presence,
    pub health: PlayerHealth,
}

#[derive(Serialize)]
pub struct TransportConnections {
    pub websocket: TransportInfo,
    pub sse: TransportInfo,
}

#[derive(Serialize)]
pub struct TransportInfo {
    pub count: usize,
    pub connection_ids: Vec<String>,
    pub last_activity: Option<String>,
}

#[derive(Serialize)]
pub struct Presence {
    pub status: &'static str,
    pub last_seen: Option<String>,
    pub total_connections: usize,
}

#[derive(Serialize)]
pub struct PlayerHealth {
    pub overall_health: &'static str,
    pub websocket_health: &'static str,
    pub sse_health: &'static str,
}

#[derive(Serialize)]
pub struct StatsResponse {
    pub total_players: usize,
    pub total_connections: usize,
    pub connection_distribution: ConnectionDistribution,
    pub session_statistics: SessionStatistics,
    pub health_statistics: HealthStatistics,
}

#[derive(Serialize)]
pub struct ConnectionDistribution {
    pub websocket_only: usize,
    pub sse_only: usize,
    pub dual_connections: usize,
}

#[derive(Serialize)]
pub struct SessionStatistics {
    pub total_sessions: usize,
    pub average_connections_per_session: f64,
}

#[derive(Serialize)]
pub struct HealthStatistics {
    pub healthy_connections: usize,
    pub unhealthy_connections: usize,
    pub health_percentage: f64,
}

// ---- Monitoring (reference "Monitoring Endpoints") -----------------------------------------

#[derive(Serialize)]
pub struct DualConnectionsResponse {
    pub connection_distribution: DualDistribution,
    pub connection_health: HealthFigures,
    pub session_analytics: SessionAnalytics,
}

#[derive(Serialize)]
pub struct DualDistribution {
    pub total_players: usize,
    pub dual_connection_players: usize,
    pub websocket_only_players: usize,
    pub sse_only_players: usize,
    pub dual_connection_percentage: f64,
}

#[derive(Serialize)]
pub struct HealthFigures {
    pub total_connections: usize,
    pub healthy_connections: usize,
    pub unhealthy_connections: usize,
    pub health_percentage: f64,
}

#[derive(Serialize)]
pub struct SessionAnalytics {
    pub total_sessions: usize,
    pub sessions_with_connections: usize,
    pub average_connections_per_session: f64,
}

#[derive(Serialize)]
pub struct PerformanceResponse {
    pub connection_establishment: EstablishmentFigures,
    pub message_delivery: DeliveryFigures,
    pub node_budget: BudgetFigures,
    pub timestamp: String,
}

/// SPEC §12.27: how full the node is, against its two bounds.
#[derive(Serialize)]
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

#[derive(Serialize)]
pub struct EstablishmentFigures {
    pub total_connections: u64,
    pub websocket_connections: u64,
    pub sse_connections: u64,
    pub avg_websocket_establishment_ms: f64,
    pub avg_sse_establishment_ms: f64,
    pub max_websocket_establishment_ms: f64,
    pub max_sse_establishment_ms: f64,
}

#[derive(Serialize)]
pub struct DeliveryFigures {
    pub total_messages_sent: u64,
    pub successful_deliveries: u64,
    pub failed_deliveries: u64,
    pub delivery_success_rate: f64,
    /// Not in the reference: connections closed because they fell behind (SPEC §6).
    pub slow_consumer_disconnects: u64,
}

#[derive(Serialize)]
pub struct ConnectionHealthResponse {
    pub overall_health: HealthFigures,
    pub connection_type_health: TypeHealth,
    pub health_trends: HealthTrendFigures,
}

#[derive(Serialize)]
pub struct TypeHealth {
    pub websocket: TypeHealthFigures,
    pub sse: TypeHealthFigures,
}

#[derive(Serialize)]
pub struct TypeHealthFigures {
    pub total: usize,
    pub healthy: usize,
    pub unhealthy: usize,
    pub health_percentage: f64,
}

#[derive(Serialize)]
pub struct HealthTrendFigures {
    pub last_hour_health_percentage: f64,
    pub last_24_hours_health_percentage: f64,
}

/// `GET /monitoring/players`: not in the reference; the dashboard's player list.
#[derive(Serialize)]
pub struct PlayersResponse {
    pub players: Vec<PlayerEntry>,
    pub total_players: usize,
    pub truncated: bool,
}

#[derive(Serialize)]
pub struct PlayerEntry {
    pub player_id: String,
    pub session_id: Option<String>,
    pub overall_health: &'static str,
    pub connections: Vec<ConnectionEntry>,
}

#[derive(Serialize)]
pub struct ConnectionEntry {
    pub connection_id: String,
    pub connection_type: &'static str,
    pub healthy: bool,
    pub last_activity: String,
    pub opened_at: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevTokenRequest {
    pub player_id: String,
}

#[derive(Serialize)]
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
