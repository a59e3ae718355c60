// A separate entry point (`@dualconn/client/react`) so that only apps that use React import it.
import { useCallback, useEffect, useLayoutEffect, useMemo, useRef, useSyncExternalStore } from 'react';

import { GameConnection, type GameConnectionOptions } from './GameConnection.js';
import type {
  CommandResult,
  ConnectionHealth,
  ConnectionInfo,
  ConnectionState,
  EventListener,
  NewSessionResponse,
  StopReason,
} from './types.js';

export interface UseGameConnectionOptions extends GameConnectionOptions {
  /** Connect on mount (default true). Otherwise call `connect()`. */
  autoConnect?: boolean;
}

export interface UseGameConnectionResult {
  isConnected: boolean;
  isConnecting: boolean;
  sessionId: string | null;
  connectionHealth: ConnectionHealth;
  /** `idle`, `connecting`, `connected`, `reconnecting` or `stopped`. */
  state: ConnectionState;
  /** Why the connection stopped (session replaced, token rejected, ...); null unless stopped. */
  stopReason: StopReason | null;
  connect: () => void;
  disconnect: () => void;
  sendCommand: (type: string, data?: unknown) => Promise<CommandResult>;
  createNewSession: (sessionId?: string) => Promise<NewSessionResponse>;
  switchToSession: (sessionId: string) => void;
  getConnectionInfo: () => Promise<ConnectionInfo>;
  /** Subscribes to one event type (or `'*'`); returns the unsubscribe function. */
  on: (eventType: string, listener: EventListener) => () => void;
}

/**
 * React binding for GameConnection, which is the external store: its state is read with
 * `useSyncExternalStore`, so every component sees the same, tear-free snapshot. The connection
 * lives as long as the component, and is made anew when `playerId`, `baseUrl` or `transports`
 * change. Callbacks may change on every render: the latest ones are always called. `sessionId`
 * in the options is only the starting session; use `switchToSession` or `createNewSession`
 * afterwards.
 */
export function useGameConnection(options: UseGameConnectionOptions): UseGameConnectionResult {
  // Latest options, read by the callbacks handed to GameConnection once. Updated after render
  // (not during it, which React forbids for refs), before any effect can call them.
  const latest = useRef(options);
  useLayoutEffect(() => {
    latest.current = options;
  });

  const transportsKey = (options.transports ?? ['websocket', 'sse']).join(',');
  // Making a connection opens nothing, so it may happen during render; it connects in an effect.
  const conn = useMemo(() => {
    return new GameConnection({
      ...options,
      getToken: () => latest.current.getToken(),
      onEvent: (e, m) => latest.current.onEvent?.(e, m),
      onDuplicate: (e, m) => latest.current.onDuplicate?.(e, m),
      onResync: (info) => latest.current.onResync?.(info),
      onError: (err, t) => latest.current.onError?.(err, t),
      onStop: (reason) => latest.current.onStop?.(reason),
      onStateChange: (s, prev) => latest.current.onStateChange?.(s, prev),
      onSessionChange: (id) => latest.current.onSessionChange?.(id),
      onConnectionHealthUpdate: (h) => latest.current.onConnectionHealthUpdate?.(h),
    });
    // Only these make a new connection; everything else is read through `latest`.
  }, [options.playerId, options.baseUrl, transportsKey]);

  const snapshot = useSyncExternalStore(conn.subscribe, conn.getSnapshot, conn.getSnapshot);

  useEffect(() => {
    if (latest.current.autoConnect !== false) conn.connect();
    return () => conn.disconnect();
  }, [conn]);

  const connect = useCallback(() => conn.connect(), [conn]);
  const disconnect = useCallback(() => conn.disconnect(), [conn]);
  const sendCommand = useCallback(
    (type: string, data?: unknown) => conn.sendCommand(type, data),
    [conn],
  );
  const createNewSession = useCallback((id?: string) => conn.createNewSession(id), [conn]);
  const switchToSession = useCallback((id: string) => conn.switchToSession(id), [conn]);
  const getConnectionInfo = useCallback(() => conn.getConnectionInfo(), [conn]);
  const on = useCallback(
    (eventType: string, listener: EventListener) => conn.on(eventType, listener),
    [conn],
  );

  return {
    isConnected: snapshot.state === 'connected',
    isConnecting: snapshot.state === 'connecting' || snapshot.state === 'reconnecting',
    sessionId: snapshot.sessionId,
    connectionHealth: snapshot.connectionHealth,
    state: snapshot.state,
    stopReason: snapshot.stopReason,
    connect,
    disconnect,
    sendCommand,
    createNewSession,
    switchToSession,
    getConnectionInfo,
    on,
  };
}
