// A separate entry point (`@dualconn/client/react`) so that only apps that use React import it.
import { useCallback, useEffect, useRef, useState } from 'react';

import { GameConnection, type GameConnectionOptions } from './GameConnection.js';
import type {
  CommandResult,
  ConnectionHealth,
  ConnectionInfo,
  ConnectionState,
  NewSessionResponse,
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
  connect: () => void;
  disconnect: () => void;
  sendCommand: (type: string, data?: unknown) => Promise<CommandResult>;
  createNewSession: (sessionId?: string) => Promise<NewSessionResponse>;
  switchToSession: (sessionId: string) => void;
  getConnectionInfo: () => Promise<ConnectionInfo>;
}

const NO_HEALTH: ConnectionHealth = {
  websocket: { status: 'disconnected', lastHeartbeatAt: null },
  sse: { status: 'disconnected', lastHeartbeatAt: null },
  overall: 'no_connections',
};

/**
 * React binding for GameConnection. The connection lives as long as the component, and is made
 * anew when `playerId`, `baseUrl` or `transports` change. Callbacks may change on every render:
 * the latest ones are always called. `sessionId` in the options is only the starting session; use
 * `switchToSession` or `createNewSession` afterwards.
 */
export function useGameConnection(options: UseGameConnectionOptions): UseGameConnectionResult {
  // Latest options, read by the callbacks we hand GameConnection once.
  const latest = useRef(options);
  latest.current = options;
  const connRef = useRef<GameConnection | null>(null);

  const [state, setState] = useState<ConnectionState>('idle');
  const [sessionId, setSessionId] = useState<string | null>(options.sessionId ?? null);
  const [connectionHealth, setHealth] = useState<ConnectionHealth>(NO_HEALTH);

  const transportsKey = (options.transports ?? ['websocket', 'sse']).join(',');

  useEffect(() => {
    const o = latest.current;
    const conn = new GameConnection({
      ...o,
      getToken: () => latest.current.getToken(),
      onEvent: (e, m) => latest.current.onEvent?.(e, m),
      onDuplicate: (e, m) => latest.current.onDuplicate?.(e, m),
      onResync: (info) => latest.current.onResync?.(info),
      onError: (err, t) => latest.current.onError?.(err, t),
      onStateChange: (s, prev) => {
        setState(s);
        latest.current.onStateChange?.(s, prev);
      },
      onSessionChange: (id) => {
        setSessionId(id);
        latest.current.onSessionChange?.(id);
      },
      onConnectionHealthUpdate: (h) => {
        setHealth(h);
        latest.current.onConnectionHealthUpdate?.(h);
      },
    });
    connRef.current = conn;
    setState(conn.state);
    setSessionId(conn.sessionId);
    setHealth(conn.connectionHealth);
    if (o.autoConnect !== false) conn.connect();
    return () => {
      if (connRef.current === conn) connRef.current = null;
      conn.disconnect();
    };
  }, [options.playerId, options.baseUrl, transportsKey]);

  const connect = useCallback(() => connRef.current?.connect(), []);
  const disconnect = useCallback(() => connRef.current?.disconnect(), []);
  const sendCommand = useCallback(
    (type: string, data?: unknown) => withConn(connRef.current, (c) => c.sendCommand(type, data)),
    [],
  );
  const createNewSession = useCallback(
    (id?: string) => withConn(connRef.current, (c) => c.createNewSession(id)),
    [],
  );
  const switchToSession = useCallback((id: string) => connRef.current?.switchToSession(id), []);
  const getConnectionInfo = useCallback(
    () => withConn(connRef.current, (c) => c.getConnectionInfo()),
    [],
  );

  return {
    isConnected: state === 'connected',
    isConnecting: state === 'connecting' || state === 'reconnecting',
    sessionId,
    connectionHealth,
    connect,
    disconnect,
    sendCommand,
    createNewSession,
    switchToSession,
    getConnectionInfo,
  };
}

function withConn<T>(conn: GameConnection | null, fn: (c: GameConnection) => Promise<T>): Promise<T> {
  if (!conn) return Promise.reject(new Error('useGameConnection: the component is not mounted'));
  return fn(conn);
}
