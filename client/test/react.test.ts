// @vitest-environment jsdom
// The hook with the real React and react-dom, rendering into jsdom: effects, StrictMode's double
// mount and useSyncExternalStore behave as they do in a browser.
import { act, createElement, StrictMode, type ReactNode } from 'react';
import { createRoot, type Root } from 'react-dom/client';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import {
  useGameConnection,
  type UseGameConnectionOptions,
  type UseGameConnectionResult,
} from '../src/react.js';
import {
  connectedEvent,
  FakeEventSource,
  FakeWebSocket,
  lastEs,
  lastWs,
  resetFakes,
  streamEvent,
} from './fakes.js';

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

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
    diagnoseRefusals: false,
    ...over,
  };
}

/** Renders a component that uses the hook, and keeps what each render returned. */
function render(initial: UseGameConnectionOptions, wrap: (n: ReactNode) => ReactNode = (n) => n) {
  const renders: UseGameConnectionResult[] = [];
  function Probe(props: { options: UseGameConnectionOptions }) {
    renders.push(useGameConnection(props.options));
    return null;
  }
  const container = document.createElement('div');
  let root: Root | null = null;
  act(() => {
    root = createRoot(container);
    root.render(wrap(createElement(Probe, { options: initial })));
  });
  return {
    renders,
    get result(): UseGameConnectionResult {
      const last = renders[renders.length - 1];
      if (!last) throw new Error('never rendered');
      return last;
    },
    rerender(next: UseGameConnectionOptions) {
      act(() => root!.render(wrap(createElement(Probe, { options: next }))));
    },
    unmount() {
      act(() => root!.unmount());
    },
  };
}

/** Lets getToken settle inside act, so React sees the updates it causes. */
const settle = () => act(() => vi.advanceTimersByTimeAsync(0));

describe('useGameConnection with the real React', () => {
  it('connects on mount, re-renders from the store, and closes on unmount', async () => {
    const sessions: Array<string | null> = [];
    const h = render(options({ onSessionChange: (id) => sessions.push(id) }));
    expect(h.result.isConnecting).toBe(true);
    await settle();
    act(() => lastWs().emit(connectedEvent('websocket', { session_id: 'abc' })));
    expect(h.result.isConnected).toBe(true);
    expect(h.result.state).toBe('connected');
    expect(h.result.sessionId).toBe('abc');
    expect(h.result.connectionHealth.overall).toBe('degraded');
    expect(sessions).toEqual(['abc']);
    const ws = lastWs();
    const es = lastEs();
    h.unmount();
    expect(ws.closedByClient).toBe(true);
    expect(es.closedByClient).toBe(true);
  });

  it('does not re-render for events that change nothing it returns', async () => {
    const onEvent = vi.fn();
    const h = render(options({ onEvent }));
    await settle();
    act(() => lastWs().emit(connectedEvent('websocket')));
    const before = h.renders.length;
    act(() => {
      for (let i = 1; i <= 20; i++) lastWs().emit(streamEvent(i));
    });
    expect(onEvent).toHaveBeenCalledTimes(21);
    expect(h.renders.length).toBe(before);
    h.unmount();
  });

  it('survives StrictMode: one live connection after the double mount', async () => {
    const h = render(options(), (n) => createElement(StrictMode, null, n));
    await settle();
    const open = FakeWebSocket.instances.filter((ws) => !ws.closedByClient);
    expect(open).toHaveLength(1);
    act(() => open[0]!.emit(connectedEvent('websocket')));
    expect(h.result.isConnected).toBe(true);
    h.unmount();
    expect(FakeWebSocket.instances.every((ws) => ws.closedByClient)).toBe(true);
  });

  it('calls the latest callbacks, and makes a new connection only when the player changes', async () => {
    const first = vi.fn();
    const second = vi.fn();
    const h = render(options({ onEvent: first }));
    await settle();
    h.rerender(options({ onEvent: second }));
    expect(FakeWebSocket.instances).toHaveLength(1); // a new callback does not reconnect
    act(() => lastWs().emit(streamEvent(1)));
    expect(first).not.toHaveBeenCalled();
    expect(second).toHaveBeenCalledTimes(1);

    const ws = lastWs();
    h.rerender(options({ playerId: 'p2' }));
    await settle();
    expect(ws.closedByClient).toBe(true);
    expect(lastEs().url).toBe('http://game.test/sse/p2?token=tok');
    h.unmount();
  });

  it('shows why it stopped, and starts again on connect()', async () => {
    const stops: unknown[] = [];
    const h = render(options({ onStop: (r) => stops.push(r) }));
    await settle();
    act(() => lastWs().emit(connectedEvent('websocket')));
    act(() => lastWs().emit({ event_type: 'session_terminated', data: { session_id: 'new-one' } }));
    expect(h.result.state).toBe('stopped');
    expect(h.result.stopReason).toEqual({ reason: 'session_replaced', sessionId: 'new-one' });
    expect(stops).toEqual([{ reason: 'session_replaced', sessionId: 'new-one' }]);
    act(() => h.result.switchToSession('new-one'));
    await settle();
    expect(h.result.stopReason).toBeNull();
    expect(lastWs().url).toContain('session_id=new-one');
    h.unmount();
  });

  it('lets components subscribe to event types and unsubscribe', async () => {
    const h = render(options());
    await settle();
    const chats: number[] = [];
    const off = h.result.on('chat', (e) => chats.push(e.sequence_number!));
    act(() => lastWs().emit(streamEvent(1)));
    off();
    act(() => lastWs().emit(streamEvent(2)));
    expect(chats).toEqual([1]);
    h.unmount();
  });

  it('waits for connect() when autoConnect is false', async () => {
    const h = render(options({ autoConnect: false }));
    await settle();
    expect(FakeWebSocket.instances).toHaveLength(0);
    act(() => h.result.connect());
    await settle();
    expect(FakeWebSocket.instances).toHaveLength(1);
    h.unmount();
  });
});
