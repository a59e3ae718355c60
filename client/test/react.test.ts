import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { useGameConnection, type UseGameConnectionOptions } from '../src/react.js';
import { connectedEvent, FakeEventSource, FakeWebSocket, lastEs, lastWs, resetFakes, streamEvent } from './fakes.js';
import { flush } from './helpers.js';
import { renderHook } from './minireact.js';

vi.mock('react', () => import('./minireact.js'));

beforeEach(() => {
  vi.useFakeTimers();
  resetFakes();
});
afterEach(() => {
  vi.useRealTimers();
});

function options(over: Partial<UseGameConnectionOptions> = {}): UseGameConnectionOptions {
  return {
    playerId: 'p1',
    baseUrl: 'http://game.test',
    getToken: async () => 'tok',
    WebSocket: FakeWebSocket,
    EventSource: FakeEventSource,
    random: () => 1,
    ...over,
  };
}

describe('useGameConnection', () => {
  it('returns exactly the reference\'s fields', () => {
    const h = renderHook(useGameConnection, options({ autoConnect: false }));
    expect(Object.keys(h.result).sort()).toEqual(
      [
        'connect', 'connectionHealth', 'createNewSession', 'disconnect', 'getConnectionInfo',
        'isConnected', 'isConnecting', 'sendCommand', 'sessionId', 'switchToSession',
      ].sort(),
    );
    h.unmount();
  });

  it('connects on mount, reflects state and session, and closes on unmount', async () => {
    const sessions: Array<string | null> = [];
    const h = renderHook(useGameConnection, options({ onSessionChange: (id) => sessions.push(id) }));
    expect(h.result.isConnecting).toBe(true);
    await flush();
    lastWs().emit(connectedEvent('websocket', { session_id: 'abc' }));
    h.rerender();
    expect(h.result.isConnected).toBe(true);
    expect(h.result.sessionId).toBe('abc');
    expect(h.result.connectionHealth.overall).toBe('degraded');
    expect(sessions).toEqual(['abc']);
    const ws = lastWs();
    const es = lastEs();
    h.unmount();
    expect(ws.closedByClient).toBe(true);
    expect(es.closedByClient).toBe(true);
  });

  it('calls the latest onEvent, not the one from the first render', async () => {
    const first = vi.fn();
    const second = vi.fn();
    const h = renderHook(useGameConnection, options({ onEvent: first }));
    await flush();
    h.rerender(options({ onEvent: second }));
    expect(FakeWebSocket.instances).toHaveLength(1); // a new callback does not reconnect
    lastWs().emit(streamEvent(1));
    expect(first).not.toHaveBeenCalled();
    expect(second).toHaveBeenCalledTimes(1);
    h.unmount();
  });

  it('makes a new connection when the player changes', async () => {
    const h = renderHook(useGameConnection, options());
    await flush();
    const ws = lastWs();
    h.rerender(options({ playerId: 'p2' }));
    await flush();
    expect(ws.closedByClient).toBe(true);
    expect(lastEs().url).toBe('http://game.test/sse/p2?token=tok');
    h.unmount();
  });

  it('waits for connect() when autoConnect is false, and rejects REST calls after unmount', async () => {
    const h = renderHook(useGameConnection, options({ autoConnect: false }));
    await flush();
    expect(FakeWebSocket.instances).toHaveLength(0);
    h.result.connect();
    await flush();
    expect(FakeWebSocket.instances).toHaveLength(1);
    const { getConnectionInfo } = h.result;
    h.unmount();
    await expect(getConnectionInfo()).rejects.toThrow(/not mounted/);
  });
});
