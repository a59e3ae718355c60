// Public types. Transport and fetch types are structural so that Node users need neither the DOM
// lib nor a polyfill's own typings: anything shaped like the browser's classes works.

export type TransportKind = 'websocket' | 'sse';

/** One message from the server, exactly as it crosses the wire (SPEC §3). */
export interface DualconnEvent<D = unknown> {
  event_type: string;
  timestamp: string;
  /** Present on stream events only; the dedup key together with `player_id`. */
  sequence_number?: number;
  player_id: string;
  room_id?: string;
  data: D;
}

/** Events the server sends to a single connection. They are never deduplicated. */
export const CONNECTION_LOCAL_EVENTS = [
  'connected',
  'heartbeat',
  'pong',
  'error',
  'recovery',
  'session_terminated',
  'server_shutdown',
  'connection_replaced',
  'token_expired',
] as const;

export interface EventMeta {
  /** The transport that delivered this copy. */
  transport: TransportKind;
  /**
   * Every transport that has brought this stream event so far, in arrival order. Undefined for
   * connection-local events, and for duplicates so old they fell out of the dedup window.
   */
  transports?: TransportKind[];
  /**
   * Copies of this stream event dropped so far (0 on first delivery). Undefined for
   * connection-local events and for duplicates older than the dedup window.
   */
  duplicatesOfThisEvent?: number;
}

export type ConnectionState =
  /** Not started, or stopped by `disconnect()`. */
  | 'idle'
  /** First attempt in progress, no transport up yet. */
  | 'connecting'
  /** At least one transport is up. */
  | 'connected'
  /** Was up, every transport is down, and at least one is retrying. */
  | 'reconnecting'
  /** Nothing will retry: the session was ended elsewhere, or every transport gave up. */
  | 'stopped';

/**
 * Why a connection is `stopped`, so an app can act (re-authenticate, adopt the new session)
 * instead of guessing from close codes, which browsers hide for refused handshakes anyway.
 */
export type StopReason =
  /**
   * Another client started a new session (`session_terminated`, close 4001), or the session this
   * client asked for is no longer the player's current one. `sessionId` is the current one when
   * known: `switchToSession(sessionId)` adopts it.
   */
  | { reason: 'session_replaced'; sessionId: string | null }
  /** The server refused the token (401), or refused it for this player (403): get a new one. */
  | { reason: 'token_rejected'; status: number; transport: TransportKind }
  /** The per-player connection cap chose newer connections (close 4002) on every transport. */
  | { reason: 'connection_replaced' }
  /** Every transport failed `maxAttempts` times in a row. */
  | { reason: 'gave_up' };

/** What `useSyncExternalStore` reads: a new object whenever any field changes. */
export interface ConnectionSnapshot {
  state: ConnectionState;
  sessionId: string | null;
  connectionHealth: ConnectionHealth;
  /** Set while `state` is `stopped`; null otherwise. */
  stopReason: StopReason | null;
}

export type EventListener = (event: DualconnEvent, meta: EventMeta) => void;

/** One transport's phase; see `GameConnection.transportStates`. */
export type TransportState = 'idle' | 'connecting' | 'open' | 'waiting' | 'stopped' | 'disabled';

export type TransportStatus = 'healthy' | 'unhealthy' | 'disconnected';
export type OverallHealth = 'healthy' | 'degraded' | 'unhealthy' | 'no_connections';

export interface TransportHealth {
  status: TransportStatus;
  /** `Date.now()`-style ms of the last heartbeat, pong or `connected`; null before the first. */
  lastHeartbeatAt: number | null;
}

export interface ConnectionHealth {
  websocket: TransportHealth;
  sse: TransportHealth;
  overall: OverallHealth;
}

export interface DeliveryStats {
  /** Stream events handed to `onEvent` once each. */
  delivered: number;
  /** Copies of stream events that had already been delivered. */
  duplicatesDropped: number;
  /** How many stream events each transport delivered first. */
  firstBy: Record<TransportKind, number>;
  /** Connection-local events passed through (never deduplicated). */
  localEvents: number;
}

// ---- Injectable platform classes ---------------------------------------------------------

export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onclose: ((ev: { code: number; reason: string; wasClean?: boolean }) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export interface EventSourceLike {
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: string; lastEventId?: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  close(): void;
}

export type EventSourceConstructor = new (url: string) => EventSourceLike;

export interface ResponseLike {
  readonly ok: boolean;
  readonly status: number;
  text(): Promise<string>;
}

export type FetchLike = (
  url: string,
  init: { method: string; headers: Record<string, string>; body?: string },
) => Promise<ResponseLike>;

export interface TimerApi {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

// ---- REST shapes (reference "Session Management" / "Connection Statistics") --------------

export interface NewSessionResponse {
  success: boolean;
  message: string;
  session_id: string;
  previous_connections_disconnected: number;
  timestamp: string;
}

export interface TransportConnectionInfo {
  count: number;
  connection_ids: string[];
  last_activity: string | null;
}

export interface ConnectionInfo {
  player_id: string;
  session_id: string | null;
  connections: { websocket: TransportConnectionInfo; sse: TransportConnectionInfo };
  presence: { status: string; last_seen: string | null; total_connections: number };
  health: { overall_health: string; websocket_health: string; sse_health: string };
}

export type CommandResult =
  | { transport: 'websocket' }
  | { transport: 'http'; status: number; body: unknown };
