import { backoffDelay, type BackoffOptions } from './backoff.js';
import { Deduplicator, DEFAULT_DEDUP_WINDOW, type DeliveryRecord } from './dedup.js';
import { summarizeHealth, sameHealth } from './health.js';
import { httpRequest, resolveHttpBase, withQuery } from './http.js';
import { openEventSource } from './transports/sse.js';
import type { CloseInfo, TransportHandle } from './transports/types.js';
import { openWebSocket } from './transports/ws.js';
import { DualconnError } from './errors.js';
import type {
  CommandResult,
  ConnectionHealth,
  ConnectionInfo,
  ConnectionSnapshot,
  ConnectionState,
  DeliveryStats,
  DualconnEvent,
  EventListener,
  EventMeta,
  EventSourceConstructor,
  FetchLike,
  NewSessionResponse,
  StopReason,
  TimerApi,
  TransportKind,
  TransportState,
  WebSocketConstructor,
} from './types.js';

export interface ResyncInfo {
  transport: TransportKind;
  /** The cursor this connection resumed from. */
  fromSequenceNumber: number | null;
  /** Events the server still had and replayed after the gap. */
  replayed: number | null;
}

export interface GameConnectionOptions {
  playerId: string;
  /** `http(s)://host[:port][/prefix]`; the WebSocket URL is derived from it. */
  baseUrl: string;
  /** Called before every (re)connect and HTTP request, so an expired token is replaced. */
  getToken: () => Promise<string> | string;
  /** Session to join; without one the server's current session is joined (or one is started). */
  sessionId?: string | null;
  /** Resume from this sequence number on the first connect (e.g. one kept across a page load). */
  resumeFrom?: number | null;
  /** Default `['websocket', 'sse']`: both at once. */
  transports?: TransportKind[];

  /** Each stream event once, and every connection-local event as it comes. */
  onEvent?: (event: DualconnEvent, meta: EventMeta) => void;
  /** A stream event that had already been delivered arrived again and was dropped. */
  onDuplicate?: (event: DualconnEvent, meta: EventMeta) => void;
  onSessionChange?: (sessionId: string | null) => void;
  onConnectionHealthUpdate?: (health: ConnectionHealth) => void;
  onStateChange?: (state: ConnectionState, previous: ConnectionState) => void;
  /** The server could not replay everything since the cursor (`recovery` with `recovered:false`). */
  onResync?: (info: ResyncInfo) => void;
  /** Failures that do not reach `onEvent`: getToken rejecting, a transport that cannot open, bad frames. */
  onError?: (error: unknown, transport?: TransportKind) => void;
  /**
   * After a connection fails before `connected`, ask `GET /api/connections/{id}/session` why
   * (default true): a refused token or a replaced session then stops the connection with its
   * `stopReason` instead of retrying forever. One request per failed attempt.
   */
  diagnoseRefusals?: boolean;
  /** The connection stopped for good, and why; `stopReason` holds the same until restarted. */
  onStop?: (reason: StopReason) => void;

  WebSocket?: WebSocketConstructor;
  EventSource?: EventSourceConstructor;
  fetch?: FetchLike;

  backoff?: BackoffOptions;
  /** Consecutive failed attempts per transport before it gives up. Default: unlimited. */
  maxAttempts?: number;
  /** Stream events remembered exactly for dedup. Default 1024. */
  dedupWindow?: number;
  /** Heartbeat interval assumed until `connected` says otherwise. Default 15 000 ms. */
  heartbeatIntervalMs?: number;
  random?: () => number;
  timers?: TimerApi;
  now?: () => number;
}

/** Why the current connection of a transport is about to end, learned before the close. */
type EndHint = 'session_terminated' | 'replaced' | 'shutdown' | 'token_expired';

type Phase =
  | 'idle'
  | 'connecting'
  | 'open'
  | 'waiting'
  /** Ended by our own session change; restarted when the new session id is known. */
  | 'parked'
  | 'stopped';

interface Slot {
  kind: TransportKind;
  phase: Phase;
  handle: TransportHandle | null;
  /** Bumped whenever the slot is torn down, so callbacks of an abandoned socket are ignored. */
  epoch: number;
  /** Consecutive failures since the last `connected`. */
  attempt: number;
  /** Got `connected` on the current connection. */
  up: boolean;
  hint: EndHint | null;
  shutdownDelayMs: number;
  terminatedSessionId: string | null;
  retryTimer: unknown;
  watchdogTimer: unknown;
  heartbeatIntervalMs: number;
  lastHeartbeatAt: number | null;
}

const CLOSE_SESSION_REPLACED = 4001;
const CLOSE_CONNECTION_REPLACED = 4002;

/**
 * One player's connection to dualconn over WebSocket and SSE at once.
 *
 * Each transport connects, fails and reconnects on its own; the app sees one stream in which
 * every stream event appears exactly once, whichever transport brought it first.
 */
export class GameConnection {
  private readonly opts: GameConnectionOptions;
  private readonly slots: Slot[];
  private readonly dedup: Deduplicator;
  private readonly httpBase: string;
  private readonly wsBase: string;

  private running = false;
  private everConnected = false;
  private currentSession: string | null;
  private resumeFrom: number | null;
  /** Our own POSTs in flight: `session_terminated` meanwhile is expected, not an eviction. */
  private sessionChangesInFlight = 0;
  private currentState: ConnectionState = 'idle';
  private lastHealth: ConnectionHealth;
  /** Why every transport stopped, once one of them knew; cleared when started again. */
  private reason: StopReason | null = null;
  private snap: ConnectionSnapshot;
  private readonly storeListeners = new Set<() => void>();
  private readonly listeners = new Map<string, Set<EventListener>>();
  private readonly counters: DeliveryStats = {
    delivered: 0,
    duplicatesDropped: 0,
    firstBy: { websocket: 0, sse: 0 },
    localEvents: 0,
  };

  constructor(options: GameConnectionOptions) {
    if (!options.playerId) throw new TypeError('playerId is required');
    if (typeof options.getToken !== 'function') throw new TypeError('getToken is required');
    this.opts = options;
    this.httpBase = resolveHttpBase(options.baseUrl);
    this.wsBase = this.httpBase.replace(/^http/i, 'ws');
    this.currentSession = options.sessionId ?? null;
    this.resumeFrom = options.resumeFrom ?? null;
    this.dedup = new Deduplicator(options.dedupWindow ?? DEFAULT_DEDUP_WINDOW);
    // What an earlier page life delivered must not be delivered again if a replay brings it.
    if (this.resumeFrom !== null) this.dedup.seed(options.playerId, this.resumeFrom);
    const kinds = dedupeKinds(options.transports ?? ['websocket', 'sse']);
    if (kinds.length === 0) throw new TypeError('at least one transport is required');
    this.slots = kinds.map((kind) => newSlot(kind, options.heartbeatIntervalMs ?? 15_000));
    this.lastHealth = this.computeHealth();
    this.snap = this.makeSnapshot();
  }

  // ---- public state ----------------------------------------------------------------------

  get state(): ConnectionState {
    return this.currentState;
  }

  get isConnected(): boolean {
    return this.currentState === 'connected';
  }

  get isConnecting(): boolean {
    return this.currentState === 'connecting' || this.currentState === 'reconnecting';
  }

  get sessionId(): string | null {
    return this.currentSession;
  }

  get connectionHealth(): ConnectionHealth {
    return this.lastHealth;
  }

  /** Why the connection is `stopped`; null while it is not. */
  get stopReason(): StopReason | null {
    return this.currentState === 'stopped' ? this.reason : null;
  }

  // ---- subscriptions ---------------------------------------------------------------------

  /**
   * Calls `listener` with every event of this type as it is delivered (stream events once
   * each, after dedup, and connection-local ones), or with every event for `'*'`. Any number of
   * listeners may share a type. Returns the function that unsubscribes this one.
   */
  on(eventType: string, listener: EventListener): () => void {
    let set = this.listeners.get(eventType);
    if (!set) {
      set = new Set();
      this.listeners.set(eventType, set);
    }
    // A wrapper per subscription, so the same function subscribed twice unsubscribes once each.
    const entry: EventListener = (event, meta) => listener(event, meta);
    set.add(entry);
    return () => {
      const current = this.listeners.get(eventType);
      current?.delete(entry);
      if (current?.size === 0) this.listeners.delete(eventType);
    };
  }

  /**
   * For React's `useSyncExternalStore`: `onStoreChange` is called whenever `getSnapshot()`
   * would return a new object. Both are bound, so they can be passed as they are.
   */
  readonly subscribe = (onStoreChange: () => void): (() => void) => {
    const entry = () => onStoreChange();
    this.storeListeners.add(entry);
    return () => {
      this.storeListeners.delete(entry);
    };
  };

  /** The current state, session, health and stop reason; the same object until one changes. */
  readonly getSnapshot = (): ConnectionSnapshot => this.snap;

  get stats(): DeliveryStats {
    return { ...this.counters, firstBy: { ...this.counters.firstBy } };
  }

  /** The resume cursor: the highest sequence number delivered to the app, if any. */
  get lastSequenceNumber(): number | null {
    return this.dedup.highest(this.opts.playerId) ?? this.resumeFrom;
  }

  /** Which transports brought a recent stream event, and how many copies were dropped. */
  deliveryRecord(sequenceNumber: number, playerId = this.opts.playerId): DeliveryRecord | undefined {
    const r = this.dedup.record(playerId, sequenceNumber);
    return r && { transports: [...r.transports], duplicates: r.duplicates };
  }

  // ---- lifecycle -------------------------------------------------------------------------

  /** Opens every transport. Harmless while already connecting or connected. */
  connect(): void {
    if (this.running && this.slots.some((s) => s.phase !== 'stopped' && s.phase !== 'idle')) return;
    this.running = true;
    this.everConnected = false;
    this.reason = null;
    for (const slot of this.slots) {
      this.teardown(slot);
      slot.attempt = 0;
      void this.open(slot);
    }
    this.refresh();
  }

  /** Closes every transport and stops reconnecting until `connect()`. */
  disconnect(): void {
    this.running = false;
    for (const slot of this.slots) {
      this.teardown(slot);
      slot.phase = 'idle';
    }
    this.refresh();
  }

  /**
   * Drops one transport's current connection, as a network failure would, and lets it reconnect
   * by itself: after `downForMs` (default 0) plus the usual backoff, resuming from the cursor.
   * The other transport is untouched. Returns false when that transport is not enabled, or is
   * stopped or idle. Meant for demos and tests ("pull the plug on the WebSocket").
   */
  dropTransport(kind: TransportKind, options: { downForMs?: number } = {}): boolean {
    const slot = this.slots.find((s) => s.kind === kind);
    if (!slot || !this.running || slot.phase === 'stopped' || slot.phase === 'idle') return false;
    this.teardown(slot);
    this.scheduleRetry(slot, options.downForMs ?? 0);
    this.refresh();
    return true;
  }

  /**
   * Where each transport is in its life: `connecting` (opening, or open but the server has not
   * said `connected` yet), `open`, `waiting` (for a retry, or for our own new session),
   * `stopped`, `idle`, or `disabled` (not in `transports`).
   */
  get transportStates(): Record<TransportKind, TransportState> {
    const of = (kind: TransportKind): TransportState => {
      const slot = this.slots.find((s) => s.kind === kind);
      if (!slot) return 'disabled';
      return slot.phase === 'parked' ? 'waiting' : slot.phase;
    };
    return { websocket: of('websocket'), sse: of('sse') };
  }

  // ---- sessions --------------------------------------------------------------------------

  /**
   * Starts a new game session on the server (which ends every connection of the player,
   * ours included) and reconnects to it. Without an id the server makes one.
   */
  async createNewSession(sessionId?: string): Promise<NewSessionResponse> {
    this.sessionChangesInFlight += 1;
    let res: NewSessionResponse;
    try {
      res = await this.request<NewSessionResponse>(
        'POST',
        `/api/connections/${encodeURIComponent(this.opts.playerId)}/session`,
        sessionId === undefined ? {} : { session_id: sessionId },
      );
    } catch (err) {
      this.sessionChangesInFlight -= 1;
      // Nothing changed on the server, but a transport may have been parked by a termination
      // that raced our request; put it back on the session we still have.
      if (this.running) for (const s of this.slots) if (s.phase === 'parked') this.restart(s);
      this.refresh();
      throw err;
    }
    this.sessionChangesInFlight -= 1;
    this.adoptSession(res.session_id, true);
    return res;
  }

  /** Reconnects to an existing session id (no request to the server first). */
  switchToSession(sessionId: string): void {
    this.adoptSession(sessionId, true);
  }

  // ---- commands and REST -----------------------------------------------------------------

  /**
   * Sends `{"type", "data"}` over the WebSocket when it is open, otherwise through
   * `POST /api/commands`. Its answer arrives later as a stream event either way.
   */
  async sendCommand(type: string, data?: unknown): Promise<CommandResult> {
    const body = data === undefined ? { type } : { type, data };
    const ws = this.slots.find((s) => s.kind === 'websocket' && s.handle?.canSend());
    if (ws?.handle) {
      try {
        ws.handle.send(JSON.stringify(body));
        return { transport: 'websocket' };
      } catch {
        // The socket died between the check and the write; HTTP still works.
      }
    }
    const out = await this.requestRaw('POST', '/api/commands', body);
    return { transport: 'http', status: out.status, body: out.body };
  }

  getConnectionInfo(): Promise<ConnectionInfo> {
    return this.request<ConnectionInfo>(
      'GET',
      `/api/connections/${encodeURIComponent(this.opts.playerId)}`,
    );
  }

  // ---- transport lifecycle ---------------------------------------------------------------

  private async open(slot: Slot): Promise<void> {
    const epoch = ++slot.epoch;
    let ctor: WebSocketConstructor | EventSourceConstructor | undefined;
    try {
      ctor = slot.kind === 'websocket' ? this.wsCtor() : this.esCtor();
    } catch (err) {
      // A missing class is a set-up mistake that no retry can fix.
      this.report(err, slot.kind);
      slot.phase = 'stopped';
      this.refresh();
      return;
    }
    slot.phase = 'connecting';
    let token: string;
    try {
      token = await this.opts.getToken();
    } catch (err) {
      if (epoch !== slot.epoch) return;
      this.report(err, slot.kind);
      this.scheduleRetry(slot, 0);
      this.refresh();
      return;
    }
    if (epoch !== slot.epoch) return;

    const callbacks = {
      onOpen: () => {},
      onMessage: (text: string) => {
        if (epoch === slot.epoch) this.onFrame(slot, text);
      },
      onClose: (info: CloseInfo) => {
        if (epoch === slot.epoch) this.onClosed(slot, info);
      },
    };
    try {
      slot.handle =
        slot.kind === 'websocket'
          ? openWebSocket(ctor as WebSocketConstructor, this.wsUrl(), token, callbacks)
          : openEventSource(ctor as EventSourceConstructor, this.sseUrl(token), callbacks);
    } catch (err) {
      this.report(err, slot.kind);
      this.scheduleRetry(slot, 0);
      this.refresh();
    }
  }

  private onClosed(slot: Slot, info: CloseInfo): void {
    const wasUp = slot.up;
    slot.handle = null;
    slot.up = false;
    this.clearWatchdog(slot);
    const hint = slot.hint;
    slot.hint = null;

    if (hint === 'session_terminated' || info.code === CLOSE_SESSION_REPLACED) {
      if (this.sessionChangesInFlight > 0) {
        // Our own createNewSession did this; reconnecting now would use the replaced id.
        slot.phase = 'parked';
      } else {
        this.sessionEndedElsewhere(slot.terminatedSessionId);
        return;
      }
    } else if (hint === 'replaced' || info.code === CLOSE_CONNECTION_REPLACED) {
      // The server's per-player cap chose a newer connection over this one. Reconnecting would
      // evict that one in turn (another tab, usually), and the two would take turns forever.
      slot.phase = 'stopped';
      this.reason ??= { reason: 'connection_replaced' };
    } else {
      // Everything else (drops, 1001 shutdown, 1008 token expiry, 4008 slow consumer, an SSE
      // stream ending) is worth another attempt: with a fresh token, from the current cursor.
      this.scheduleRetry(slot, hint === 'shutdown' ? slot.shutdownDelayMs : 0);
      if (!wasUp && hint === null && this.opts.diagnoseRefusals !== false) void this.diagnose(slot);
    }
    this.refresh();
  }

  /**
   * A connection that closed before `connected` was refused, or never reached the server.
   * Browsers hide a refused handshake's status from `WebSocket` and `EventSource`, so ask the
   * same question over REST with the same token: 401/403 means the token is refused (retrying
   * cannot help), and a current session other than ours means ours was replaced (the stream
   * would answer 409 forever). Anything else leaves the retry already scheduled alone.
   */
  private async diagnose(slot: Slot): Promise<void> {
    const epoch = slot.epoch;
    const asked = this.currentSession;
    let current: string | null = null;
    try {
      const res = await this.request<{ session_id?: unknown }>(
        'GET',
        `/api/connections/${encodeURIComponent(this.opts.playerId)}/session`,
      );
      current = typeof res?.session_id === 'string' ? res.session_id : null;
    } catch (err) {
      if (
        err instanceof DualconnError &&
        (err.status === 401 || err.status === 403) &&
        epoch === slot.epoch &&
        this.running
      ) {
        this.stopAll({ reason: 'token_rejected', status: err.status, transport: slot.kind });
      }
      return;
    }
    if (
      epoch === slot.epoch &&
      this.running &&
      this.sessionChangesInFlight === 0 &&
      asked !== null &&
      asked === this.currentSession &&
      current !== null &&
      current !== asked
    ) {
      this.sessionEndedElsewhere(current);
    }
  }

  /** Stops every transport for `reason`. */
  private stopAll(reason: StopReason): void {
    this.reason = reason;
    for (const slot of this.slots) {
      this.teardown(slot);
      slot.phase = 'stopped';
    }
    this.refresh();
  }

  private scheduleRetry(slot: Slot, extraDelayMs: number): void {
    slot.handle = null;
    slot.up = false;
    const max = this.opts.maxAttempts ?? Infinity;
    if (!this.running || slot.attempt >= max) {
      slot.phase = this.running ? 'stopped' : 'idle';
      if (this.running) this.reason ??= { reason: 'gave_up' };
      return;
    }
    const delay =
      Math.max(0, extraDelayMs) +
      backoffDelay(slot.attempt, this.opts.random ?? Math.random, this.opts.backoff);
    slot.attempt += 1;
    slot.phase = 'waiting';
    const epoch = slot.epoch;
    slot.retryTimer = this.timers().setTimeout(() => {
      slot.retryTimer = null;
      if (epoch === slot.epoch && this.running) void this.open(slot);
    }, delay);
  }

  /** Forgets the slot's socket and timers; callbacks still in flight become no-ops. */
  private teardown(slot: Slot): void {
    slot.epoch += 1;
    slot.handle?.close();
    slot.handle = null;
    slot.up = false;
    slot.hint = null;
    slot.terminatedSessionId = null;
    if (slot.retryTimer != null) this.timers().clearTimeout(slot.retryTimer);
    slot.retryTimer = null;
    this.clearWatchdog(slot);
  }

  private restart(slot: Slot): void {
    this.teardown(slot);
    slot.attempt = 0;
    void this.open(slot);
  }

  private adoptSession(sessionId: string, reconnect: boolean): void {
    const changed = sessionId !== this.currentSession;
    this.currentSession = sessionId;
    if (reconnect && this.running) {
      this.everConnected = false;
      this.reason = null;
      for (const slot of this.slots) this.restart(slot);
    }
    this.refresh();
    if (changed) this.call(() => this.opts.onSessionChange?.(sessionId));
  }

  /** Another client started a new session: this one is out, and must not fight its way back. */
  private sessionEndedElsewhere(newSessionId: string | null): void {
    this.reason = { reason: 'session_replaced', sessionId: newSessionId };
    for (const slot of this.slots) {
      this.teardown(slot);
      slot.phase = 'stopped';
    }
    this.currentSession = newSessionId;
    this.refresh();
    this.call(() => this.opts.onSessionChange?.(newSessionId));
  }

  // ---- inbound ---------------------------------------------------------------------------

  private onFrame(slot: Slot, text: string): void {
    let event: DualconnEvent;
    try {
      event = JSON.parse(text) as DualconnEvent;
    } catch (err) {
      this.report(err, slot.kind);
      return;
    }
    if (typeof event !== 'object' || event === null || typeof event.event_type !== 'string') {
      this.report(new Error('frame is not an event'), slot.kind);
      return;
    }

    const seq = event.sequence_number;
    if (typeof seq === 'number' && Number.isFinite(seq)) {
      const playerId = typeof event.player_id === 'string' ? event.player_id : this.opts.playerId;
      const result = this.dedup.accept(playerId, seq, slot.kind);
      const meta: EventMeta = {
        transport: slot.kind,
        transports: result.record ? [...result.record.transports] : undefined,
        duplicatesOfThisEvent: result.record?.duplicates,
      };
      if (result.fresh) {
        this.counters.delivered += 1;
        this.counters.firstBy[slot.kind] += 1;
        this.deliver(event, meta);
      } else {
        this.counters.duplicatesDropped += 1;
        this.call(() => this.opts.onDuplicate?.(event, meta));
      }
      return;
    }

    this.counters.localEvents += 1;
    this.onLocalEvent(slot, event);
    // The app sees the event after our bookkeeping, so `isConnected` etc. are already current.
    // session_terminated is the exception: its side effects go last, after the app saw why.
    if (event.event_type !== 'session_terminated') {
      this.deliver(event, { transport: slot.kind });
    }
  }

  /** Hands an event to `onEvent` and to the listeners of its type and of `'*'`. */
  private deliver(event: DualconnEvent, meta: EventMeta): void {
    this.call(() => this.opts.onEvent?.(event, meta));
    for (const type of [event.event_type, '*']) {
      const set = this.listeners.get(type);
      // A copy: a listener may unsubscribe itself or others while we iterate.
      if (set) for (const listener of [...set]) this.call(() => listener(event, meta));
    }
  }

  private onLocalEvent(slot: Slot, event: DualconnEvent): void {
    const data = (isObject(event.data) ? event.data : {}) as Record<string, unknown>;
    switch (event.event_type) {
      case 'connected': {
        slot.up = true;
        slot.phase = 'open';
        slot.attempt = 0;
        this.everConnected = true;
        if (typeof data.heartbeat_interval_ms === 'number' && data.heartbeat_interval_ms > 0) {
          slot.heartbeatIntervalMs = data.heartbeat_interval_ms;
        }
        this.beat(slot);
        const sid = typeof data.session_id === 'string' ? data.session_id : null;
        if (sid && sid !== this.currentSession) {
          this.currentSession = sid;
          this.refresh();
          this.call(() => this.opts.onSessionChange?.(sid));
        } else {
          this.refresh();
        }
        return;
      }
      case 'heartbeat':
      case 'pong':
        this.beat(slot);
        this.refresh();
        return;
      case 'recovery':
        if (data.recovered === false) {
          const info: ResyncInfo = {
            transport: slot.kind,
            fromSequenceNumber: numberOrNull(data.from_sequence_number),
            replayed: numberOrNull(data.replayed),
          };
          this.call(() => this.opts.onResync?.(info));
        }
        return;
      case 'session_terminated': {
        slot.hint = 'session_terminated';
        slot.terminatedSessionId = typeof data.session_id === 'string' ? data.session_id : null;
        this.deliver(event, { transport: slot.kind });
        if (this.sessionChangesInFlight === 0) {
          // Act now rather than on the close: the other transport must not reconnect meanwhile.
          this.sessionEndedElsewhere(slot.terminatedSessionId);
        }
        return;
      }
      case 'server_shutdown':
        slot.hint = 'shutdown';
        slot.shutdownDelayMs = numberOrNull(data.reconnect_after_ms) ?? 0;
        return;
      case 'connection_replaced':
        slot.hint = 'replaced';
        return;
      case 'token_expired':
        slot.hint = 'token_expired';
        return;
      default:
        return;
    }
  }

  // ---- health ----------------------------------------------------------------------------

  private beat(slot: Slot): void {
    slot.lastHeartbeatAt = this.now();
    this.armWatchdog(slot);
  }

  /**
   * Marks the transport unhealthy after 2 silent heartbeat intervals, and drops and reconnects
   * it after 3: a half-open TCP connection (laptop lid, NAT timeout) otherwise looks alive forever.
   */
  private armWatchdog(slot: Slot): void {
    this.clearWatchdog(slot);
    if (!slot.up || slot.lastHeartbeatAt === null) return;
    const interval = slot.heartbeatIntervalMs;
    const silent = this.now() - slot.lastHeartbeatAt;
    if (silent > 3 * interval) {
      this.teardown(slot);
      this.scheduleRetry(slot, 0);
      this.refresh();
      return;
    }
    const next = (silent > 2 * interval ? 3 * interval : 2 * interval) - silent + 1;
    slot.watchdogTimer = this.timers().setTimeout(() => {
      slot.watchdogTimer = null;
      this.armWatchdog(slot);
      this.refresh();
    }, next);
  }

  private clearWatchdog(slot: Slot): void {
    if (slot.watchdogTimer != null) this.timers().clearTimeout(slot.watchdogTimer);
    slot.watchdogTimer = null;
  }

  private computeHealth(): ConnectionHealth {
    return summarizeHealth(this.slots, this.now());
  }

  // ---- state -----------------------------------------------------------------------------

  private computeState(): ConnectionState {
    if (!this.running) return 'idle';
    if (this.slots.some((s) => s.up)) return 'connected';
    if (this.slots.every((s) => s.phase === 'stopped')) return 'stopped';
    return this.everConnected ? 'reconnecting' : 'connecting';
  }

  /** Recomputes state and health and tells the app about whatever changed. */
  private refresh(): void {
    const state = this.computeState();
    if (state !== this.currentState) {
      const prev = this.currentState;
      this.currentState = state;
      this.call(() => this.opts.onStateChange?.(state, prev));
    }
    const health = this.computeHealth();
    if (!sameHealth(health, this.lastHealth)) {
      this.lastHealth = health;
      this.call(() => this.opts.onConnectionHealthUpdate?.(health));
    }
    const stopReason = this.stopReason;
    if (
      state !== this.snap.state ||
      this.currentSession !== this.snap.sessionId ||
      this.lastHealth !== this.snap.connectionHealth ||
      stopReason !== this.snap.stopReason
    ) {
      const stoppedNow = stopReason !== null && stopReason !== this.snap.stopReason;
      this.snap = this.makeSnapshot();
      for (const listener of [...this.storeListeners]) this.call(listener);
      if (stoppedNow) this.call(() => this.opts.onStop?.(stopReason));
    }
  }

  private makeSnapshot(): ConnectionSnapshot {
    return {
      state: this.currentState,
      sessionId: this.currentSession,
      connectionHealth: this.lastHealth,
      stopReason: this.stopReason,
    };
  }

  // ---- URLs and HTTP ---------------------------------------------------------------------

  private cursor(): number | null {
    return this.lastSequenceNumber;
  }

  private wsUrl(): string {
    return withQuery(`${this.wsBase}/api/ws`, {
      session_id: this.currentSession,
      last_event_id: this.cursor(),
    });
  }

  private sseUrl(token: string): string {
    return withQuery(`${this.httpBase}/sse/${encodeURIComponent(this.opts.playerId)}`, {
      token,
      session_id: this.currentSession,
      last_event_id: this.cursor(),
    });
  }

  private async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    return (await this.requestRaw(method, path, body)).body as T;
  }

  private requestRaw(method: string, path: string, body?: unknown) {
    return httpRequest(
      this.opts.fetch ?? (globalThis as { fetch?: FetchLike }).fetch,
      `${this.httpBase}${path}`,
      { method, token: () => this.opts.getToken(), body },
    );
  }

  // ---- platform --------------------------------------------------------------------------

  private wsCtor(): WebSocketConstructor {
    const Ctor = this.opts.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!Ctor) throw new TypeError('no WebSocket available: pass `WebSocket` in the options');
    return Ctor;
  }

  private esCtor(): EventSourceConstructor {
    const Ctor =
      this.opts.EventSource ?? (globalThis as { EventSource?: EventSourceConstructor }).EventSource;
    if (!Ctor) throw new TypeError('no EventSource available: pass `EventSource` in the options');
    return Ctor;
  }

  private timers(): TimerApi {
    // Looked up per call, not captured, so fake timers installed after construction still apply.
    return (
      this.opts.timers ?? {
        setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
        clearTimeout: (h) => globalThis.clearTimeout(h as ReturnType<typeof setTimeout>),
      }
    );
  }

  private now(): number {
    return this.opts.now ? this.opts.now() : Date.now();
  }

  private report(error: unknown, transport?: TransportKind): void {
    this.call(() => this.opts.onError?.(error, transport));
  }

  /**
   * Runs an app callback. A throwing callback must not leave our state machine half-updated, so
   * its error is rethrown on a fresh task, where it still reaches the console and error handlers.
   */
  private call(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      queueMicrotask(() => {
        throw err;
      });
    }
  }
}

function newSlot(kind: TransportKind, heartbeatIntervalMs: number): Slot {
  return {
    kind,
    phase: 'idle',
    handle: null,
    epoch: 0,
    attempt: 0,
    up: false,
    hint: null,
    shutdownDelayMs: 0,
    terminatedSessionId: null,
    retryTimer: null,
    watchdogTimer: null,
    heartbeatIntervalMs,
    lastHeartbeatAt: null,
  };
}

function dedupeKinds(kinds: TransportKind[]): TransportKind[] {
  const out: TransportKind[] = [];
  for (const k of kinds) {
    if (k !== 'websocket' && k !== 'sse') throw new TypeError(`unknown transport ${String(k)}`);
    if (!out.includes(k)) out.push(k);
  }
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function numberOrNull(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

