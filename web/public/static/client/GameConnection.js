import { backoffDelay } from './backoff.js';
import { Deduplicator, DEFAULT_DEDUP_WINDOW } from './dedup.js';
import { summarizeHealth, sameHealth } from './health.js';
import { httpRequest, resolveHttpBase, withQuery } from './http.js';
import { openEventSource } from './transports/sse.js';
import { openWebSocket } from './transports/ws.js';
import { DualconnError } from './errors.js';
const CLOSE_SESSION_REPLACED = 4001;
const CLOSE_CONNECTION_REPLACED = 4002;
/**
 * One player's connection to dualconn over WebSocket and SSE at once.
 *
 * Each transport connects, fails and reconnects on its own; the app sees one stream in which
 * every stream event appears exactly once, whichever transport brought it first.
 */
export class GameConnection {
    constructor(options) {
        this.running = false;
        this.everConnected = false;
        /** Our own POSTs in flight: `session_terminated` meanwhile is expected, not an eviction. */
        this.sessionChangesInFlight = 0;
        this.currentState = 'idle';
        /** Why every transport stopped, once one of them knew; cleared when started again. */
        this.reason = null;
        this.storeListeners = new Set();
        this.listeners = new Map();
        this.counters = {
            delivered: 0,
            duplicatesDropped: 0,
            firstBy: { websocket: 0, sse: 0 },
            localEvents: 0,
        };
        /**
         * For React's `useSyncExternalStore`: `onStoreChange` is called whenever `getSnapshot()`
         * would return a new object. Both are bound, so they can be passed as they are.
         */
        this.subscribe = (onStoreChange) => {
            const entry = () => onStoreChange();
            this.storeListeners.add(entry);
            return () => {
                this.storeListeners.delete(entry);
            };
        };
        /** The current state, session, health and stop reason; the same object until one changes. */
        this.getSnapshot = () => this.snap;
        if (!options.playerId)
            throw new TypeError('playerId is required');
        if (typeof options.getToken !== 'function')
            throw new TypeError('getToken is required');
        this.opts = options;
        this.httpBase = resolveHttpBase(options.baseUrl);
        this.wsBase = this.httpBase.replace(/^http/i, 'ws');
        this.currentSession = options.sessionId ?? null;
        this.resumeFrom = options.resumeFrom ?? null;
        this.dedup = new Deduplicator(options.dedupWindow ?? DEFAULT_DEDUP_WINDOW);
        // What an earlier page life delivered must not be delivered again if a replay brings it.
        if (this.resumeFrom !== null)
            this.dedup.seed(options.playerId, this.resumeFrom);
        const kinds = dedupeKinds(options.transports ?? ['websocket', 'sse']);
        if (kinds.length === 0)
            throw new TypeError('at least one transport is required');
        this.slots = kinds.map((kind) => newSlot(kind, options.heartbeatIntervalMs ?? 15000));
        this.lastHealth = this.computeHealth();
        this.snap = this.makeSnapshot();
    }
    // ---- public state ----------------------------------------------------------------------
    get state() {
        return this.currentState;
    }
    get isConnected() {
        return this.currentState === 'connected';
    }
    get isConnecting() {
        return this.currentState === 'connecting' || this.currentState === 'reconnecting';
    }
    get sessionId() {
        return this.currentSession;
    }
    get connectionHealth() {
        return this.lastHealth;
    }
    /** Why the connection is `stopped`; null while it is not. */
    get stopReason() {
        return this.currentState === 'stopped' ? this.reason : null;
    }
    // ---- subscriptions ---------------------------------------------------------------------
    /**
     * Calls `listener` with every event of this type as it is delivered (stream events once
     * each, after dedup, and connection-local ones), or with every event for `'*'`. Any number of
     * listeners may share a type. Returns the function that unsubscribes this one.
     */
    on(eventType, listener) {
        let set = this.listeners.get(eventType);
        if (!set) {
            set = new Set();
            this.listeners.set(eventType, set);
        }
        // A wrapper per subscription, so the same function subscribed twice unsubscribes once each.
        const entry = (event, meta) => listener(event, meta);
        set.add(entry);
        return () => {
            const current = this.listeners.get(eventType);
            current?.delete(entry);
            if (current?.size === 0)
                this.listeners.delete(eventType);
        };
    }
    get stats() {
        return { ...this.counters, firstBy: { ...this.counters.firstBy } };
    }
    /** The resume cursor: the highest sequence number delivered to the app, if any. */
    get lastSequenceNumber() {
        return this.dedup.highest(this.opts.playerId) ?? this.resumeFrom;
    }
    /** Which transports brought a recent stream event, and how many copies were dropped. */
    deliveryRecord(sequenceNumber, playerId = this.opts.playerId) {
        const r = this.dedup.record(playerId, sequenceNumber);
        return r && { transports: [...r.transports], duplicates: r.duplicates };
    }
    // ---- lifecycle -------------------------------------------------------------------------
    /** Opens every transport. Harmless while already connecting or connected. */
    connect() {
        if (this.running && this.slots.some((s) => s.phase !== 'stopped' && s.phase !== 'idle'))
            return;
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
    disconnect() {
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
    dropTransport(kind, options = {}) {
        const slot = this.slots.find((s) => s.kind === kind);
        if (!slot || !this.running || slot.phase === 'stopped' || slot.phase === 'idle')
            return false;
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
    get transportStates() {
        const of = (kind) => {
            const slot = this.slots.find((s) => s.kind === kind);
            if (!slot)
                return 'disabled';
            return slot.phase === 'parked' ? 'waiting' : slot.phase;
        };
        return { websocket: of('websocket'), sse: of('sse') };
    }
    // ---- sessions --------------------------------------------------------------------------
    /**
     * Starts a new game session on the server (which ends every connection of the player,
     * ours included) and reconnects to it. Without an id the server makes one.
     */
    async createNewSession(sessionId) {
        this.sessionChangesInFlight += 1;
        let res;
        try {
            res = await this.request('POST', `/api/connections/${encodeURIComponent(this.opts.playerId)}/session`, sessionId === undefined ? {} : { session_id: sessionId });
        }
        catch (err) {
            this.sessionChangesInFlight -= 1;
            // Nothing changed on the server, but a transport may have been parked by a termination
            // that raced our request; put it back on the session we still have.
            if (this.running)
                for (const s of this.slots)
                    if (s.phase === 'parked')
                        this.restart(s);
            this.refresh();
            throw err;
        }
        this.sessionChangesInFlight -= 1;
        this.adoptSession(res.session_id, true);
        return res;
    }
    /** Reconnects to an existing session id (no request to the server first). */
    switchToSession(sessionId) {
        this.adoptSession(sessionId, true);
    }
    // ---- commands and REST -----------------------------------------------------------------
    /**
     * Sends `{"type", "data"}` over the WebSocket when it is open, otherwise through
     * `POST /api/commands`. Its answer arrives later as a stream event either way.
     */
    async sendCommand(type, data) {
        const body = data === undefined ? { type } : { type, data };
        const ws = this.slots.find((s) => s.kind === 'websocket' && s.handle?.canSend());
        if (ws?.handle) {
            try {
                ws.handle.send(JSON.stringify(body));
                return { transport: 'websocket' };
            }
            catch {
                // The socket died between the check and the write; HTTP still works.
            }
        }
        const out = await this.requestRaw('POST', '/api/commands', body);
        return { transport: 'http', status: out.status, body: out.body };
    }
    getConnectionInfo() {
        return this.request('GET', `/api/connections/${encodeURIComponent(this.opts.playerId)}`);
    }
    // ---- transport lifecycle ---------------------------------------------------------------
    async open(slot) {
        const epoch = ++slot.epoch;
        let ctor;
        try {
            ctor = slot.kind === 'websocket' ? this.wsCtor() : this.esCtor();
        }
        catch (err) {
            // A missing class is a set-up mistake that no retry can fix.
            this.report(err, slot.kind);
            slot.phase = 'stopped';
            this.refresh();
            return;
        }
        slot.phase = 'connecting';
        let token;
        try {
            token = await this.opts.getToken();
        }
        catch (err) {
            if (epoch !== slot.epoch)
                return;
            this.report(err, slot.kind);
            this.scheduleRetry(slot, 0);
            this.refresh();
            return;
        }
        if (epoch !== slot.epoch)
            return;
        const callbacks = {
            onOpen: () => { },
            onMessage: (text) => {
                if (epoch === slot.epoch)
                    this.onFrame(slot, text);
            },
            onClose: (info) => {
                if (epoch === slot.epoch)
                    this.onClosed(slot, info);
            },
        };
        try {
            slot.handle =
                slot.kind === 'websocket'
                    ? openWebSocket(ctor, this.wsUrl(), token, callbacks)
                    : openEventSource(ctor, this.sseUrl(token), callbacks);
        }
        catch (err) {
            this.report(err, slot.kind);
            this.scheduleRetry(slot, 0);
            this.refresh();
        }
    }
    onClosed(slot, info) {
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
            }
            else {
                this.sessionEndedElsewhere(slot.terminatedSessionId);
                return;
            }
        }
        else if (hint === 'replaced' || info.code === CLOSE_CONNECTION_REPLACED) {
            // The server's per-player cap chose a newer connection over this one. Reconnecting would
            // evict that one in turn (another tab, usually), and the two would take turns forever.
            slot.phase = 'stopped';
            this.reason ?? (this.reason = { reason: 'connection_replaced' });
        }
        else {
            // Everything else (drops, 1001 shutdown, 1008 token expiry, 4008 slow consumer, an SSE
            // stream ending) is worth another attempt: with a fresh token, from the current cursor.
            this.scheduleRetry(slot, hint === 'shutdown' ? slot.shutdownDelayMs : 0);
            if (!wasUp && hint === null && this.opts.diagnoseRefusals !== false)
                void this.diagnose(slot);
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
    async diagnose(slot) {
        const epoch = slot.epoch;
        const asked = this.currentSession;
        let current = null;
        try {
            const res = await this.request('GET', `/api/connections/${encodeURIComponent(this.opts.playerId)}/session`);
            current = typeof res?.session_id === 'string' ? res.session_id : null;
        }
        catch (err) {
            if (err instanceof DualconnError &&
                (err.status === 401 || err.status === 403) &&
                epoch === slot.epoch &&
                this.running) {
                this.stopAll({ reason: 'token_rejected', status: err.status, transport: slot.kind });
            }
            return;
        }
        if (epoch === slot.epoch &&
            this.running &&
            this.sessionChangesInFlight === 0 &&
            asked !== null &&
            asked === this.currentSession &&
            current !== null &&
            current !== asked) {
            this.sessionEndedElsewhere(current);
        }
    }
    /** Stops every transport for `reason`. */
    stopAll(reason) {
        this.reason = reason;
        for (const slot of this.slots) {
            this.teardown(slot);
            slot.phase = 'stopped';
        }
        this.refresh();
    }
    scheduleRetry(slot, extraDelayMs) {
        slot.handle = null;
        slot.up = false;
        const max = this.opts.maxAttempts ?? Infinity;
        if (!this.running || slot.attempt >= max) {
            slot.phase = this.running ? 'stopped' : 'idle';
            if (this.running)
                this.reason ?? (this.reason = { reason: 'gave_up' });
            return;
        }
        const delay = Math.max(0, extraDelayMs) +
            backoffDelay(slot.attempt, this.opts.random ?? Math.random, this.opts.backoff);
        slot.attempt += 1;
        slot.phase = 'waiting';
        const epoch = slot.epoch;
        slot.retryTimer = this.timers().setTimeout(() => {
            slot.retryTimer = null;
            if (epoch === slot.epoch && this.running)
                void this.open(slot);
        }, delay);
    }
    /** Forgets the slot's socket and timers; callbacks still in flight become no-ops. */
    teardown(slot) {
        slot.epoch += 1;
        slot.handle?.close();
        slot.handle = null;
        slot.up = false;
        slot.hint = null;
        slot.terminatedSessionId = null;
        if (slot.retryTimer != null)
            this.timers().clearTimeout(slot.retryTimer);
        slot.retryTimer = null;
        this.clearWatchdog(slot);
    }
    restart(slot) {
        this.teardown(slot);
        slot.attempt = 0;
        void this.open(slot);
    }
    adoptSession(sessionId, reconnect) {
        const changed = sessionId !== this.currentSession;
        this.currentSession = sessionId;
        if (reconnect && this.running) {
            this.everConnected = false;
            this.reason = null;
            for (const slot of this.slots)
                this.restart(slot);
        }
        this.refresh();
        if (changed)
            this.call(() => this.opts.onSessionChange?.(sessionId));
    }
    /** Another client started a new session: this one is out, and must not fight its way back. */
    sessionEndedElsewhere(newSessionId) {
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
    onFrame(slot, text) {
        let event;
        try {
            event = JSON.parse(text);
        }
        catch (err) {
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
            const meta = {
                transport: slot.kind,
                transports: result.record ? [...result.record.transports] : undefined,
                duplicatesOfThisEvent: result.record?.duplicates,
            };
            if (result.fresh) {
                this.counters.delivered += 1;
                this.counters.firstBy[slot.kind] += 1;
                this.deliver(event, meta);
            }
            else {
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
    deliver(event, meta) {
        this.call(() => this.opts.onEvent?.(event, meta));
        for (const type of [event.event_type, '*']) {
            const set = this.listeners.get(type);
            // A copy: a listener may unsubscribe itself or others while we iterate.
            if (set)
                for (const listener of [...set])
                    this.call(() => listener(event, meta));
        }
    }
    onLocalEvent(slot, event) {
        const data = (isObject(event.data) ? event.data : {});
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
                }
                else {
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
                    const info = {
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
    beat(slot) {
        slot.lastHeartbeatAt = this.now();
        this.armWatchdog(slot);
    }
    /**
     * Marks the transport unhealthy after 2 silent heartbeat intervals, and drops and reconnects
     * it after 3: a half-open TCP connection (laptop lid, NAT timeout) otherwise looks alive forever.
     */
    armWatchdog(slot) {
        this.clearWatchdog(slot);
        if (!slot.up || slot.lastHeartbeatAt === null)
            return;
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
    clearWatchdog(slot) {
        if (slot.watchdogTimer != null)
            this.timers().clearTimeout(slot.watchdogTimer);
        slot.watchdogTimer = null;
    }
    computeHealth() {
        return summarizeHealth(this.slots, this.now());
    }
    // ---- state -----------------------------------------------------------------------------
    computeState() {
        if (!this.running)
            return 'idle';
        if (this.slots.some((s) => s.up))
            return 'connected';
        if (this.slots.every((s) => s.phase === 'stopped'))
            return 'stopped';
        return this.everConnected ? 'reconnecting' : 'connecting';
    }
    /** Recomputes state and health and tells the app about whatever changed. */
    refresh() {
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
        if (state !== this.snap.state ||
            this.currentSession !== this.snap.sessionId ||
            this.lastHealth !== this.snap.connectionHealth ||
            stopReason !== this.snap.stopReason) {
            const stoppedNow = stopReason !== null && stopReason !== this.snap.stopReason;
            this.snap = this.makeSnapshot();
            for (const listener of [...this.storeListeners])
                this.call(listener);
            if (stoppedNow)
                this.call(() => this.opts.onStop?.(stopReason));
        }
    }
    makeSnapshot() {
        return {
            state: this.currentState,
            sessionId: this.currentSession,
            connectionHealth: this.lastHealth,
            stopReason: this.stopReason,
        };
    }
    // ---- URLs and HTTP ---------------------------------------------------------------------
    cursor() {
        return this.lastSequenceNumber;
    }
    wsUrl() {
        return withQuery(`${this.wsBase}/api/ws`, {
            session_id: this.currentSession,
            last_event_id: this.cursor(),
        });
    }
    sseUrl(token) {
        return withQuery(`${this.httpBase}/sse/${encodeURIComponent(this.opts.playerId)}`, {
            token,
            session_id: this.currentSession,
            last_event_id: this.cursor(),
        });
    }
    async request(method, path, body) {
        return (await this.requestRaw(method, path, body)).body;
    }
    requestRaw(method, path, body) {
        return httpRequest(this.opts.fetch ?? globalThis.fetch, `${this.httpBase}${path}`, { method, token: () => this.opts.getToken(), body });
    }
    // ---- platform --------------------------------------------------------------------------
    wsCtor() {
        const Ctor = this.opts.WebSocket ?? globalThis.WebSocket;
        if (!Ctor)
            throw new TypeError('no WebSocket available: pass `WebSocket` in the options');
        return Ctor;
    }
    esCtor() {
        const Ctor = this.opts.EventSource ?? globalThis.EventSource;
        if (!Ctor)
            throw new TypeError('no EventSource available: pass `EventSource` in the options');
        return Ctor;
    }
    timers() {
        // Looked up per call, not captured, so fake timers installed after construction still apply.
        return (this.opts.timers ?? {
            setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
            clearTimeout: (h) => globalThis.clearTimeout(h),
        });
    }
    now() {
        return this.opts.now ? this.opts.now() : Date.now();
    }
    report(error, transport) {
        this.call(() => this.opts.onError?.(error, transport));
    }
    /**
     * Runs an app callback. A throwing callback must not leave our state machine half-updated, so
     * its error is rethrown on a fresh task, where it still reaches the console and error handlers.
     */
    call(fn) {
        try {
            fn();
        }
        catch (err) {
            queueMicrotask(() => {
                throw err;
            });
        }
    }
}
function newSlot(kind, heartbeatIntervalMs) {
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
function dedupeKinds(kinds) {
    const out = [];
    for (const k of kinds) {
        if (k !== 'websocket' && k !== 'sse')
            throw new TypeError(`unknown transport ${String(k)}`);
        if (!out.includes(k))
            out.push(k);
    }
    return out;
}
function isObject(v) {
    return typeof v === 'object' && v !== null && !Array.isArray(v);
}
function numberOrNull(v) {
    return typeof v === 'number' && Number.isFinite(v) ? v : null;
}
