import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { DualconnError } from '../src/errors.js';
import {
  connectedEvent,
  fakeFetch,
  FakeEventSource,
  FakeWebSocket,
  lastEs,
  lastWs,
  resetFakes,
  streamEvent,
} from './fakes.js';
import { advance, flush, setup } from './helpers.js';

beforeEach(() => {
  vi.useFakeTimers();
  resetFakes();
});
afterEach(() => {
  vi.useRealTimers();
});

/** Connects both transports and has the server confirm each. */
async function connectBoth(t: ReturnType<typeof setup>) {
  t.conn.connect();
  await flush();
  const ws = lastWs();
  const es = lastEs();
  ws.open();
  ws.emit(connectedEvent('websocket'));
  es.open();
  es.emit(connectedEvent('sse'));
  return { ws, es };
}

describe('URLs and tokens', () => {
  it('opens both transports in parallel with the token where each can carry it', async () => {
    const t = setup({ playerId: 'p:1@x', baseUrl: 'https://game.test/prefix/', sessionId: 's 1' });
    t.conn.connect();
    await flush();
    expect(FakeWebSocket.instances).toHaveLength(1);
    expect(FakeEventSource.instances).toHaveLength(1);
    const ws = lastWs();
    expect(ws.url).toBe('wss://game.test/prefix/api/ws?session_id=s+1');
    expect(ws.protocols).toEqual(['bearer', 'tok1']);
    expect(ws.url).not.toContain('tok');
    expect(lastEs().url).toBe('https://game.test/prefix/sse/p%3A1%40x?token=tok2&session_id=s+1');
    expect(t.getToken).toHaveBeenCalledTimes(2);
  });

  it('leaves out session_id and last_event_id when there is none', async () => {
    const t = setup({ transports: ['websocket'] });
    t.conn.connect();
    await flush();
    expect(lastWs().url).toBe('ws://game.test:8000/api/ws');
    expect(FakeEventSource.instances).toHaveLength(0);
  });

  it('rejects a baseUrl that is not http(s)', () => {
    expect(() => setup({ baseUrl: 'ftp://x' })).toThrow(TypeError);
  });
});

describe('exactly-once delivery', () => {
  it('delivers each stream event once however the transports interleave', async () => {
    const t = setup();
    const { ws, es } = await connectBoth(t);
    ws.emit(streamEvent(1));
    es.emit(streamEvent(1));
    es.emit(streamEvent(2));
    es.emit(streamEvent(3));
    ws.emit(streamEvent(2));
    ws.emit(streamEvent(3));
    ws.emit(streamEvent(4));
    es.emit(streamEvent(4));
    expect(t.streamSeqs()).toEqual([1, 2, 3, 4]);
    expect(t.conn.stats).toEqual({
      delivered: 4,
      duplicatesDropped: 4,
      firstBy: { websocket: 2, sse: 2 },
      localEvents: 2,
    });
    expect(t.duplicates.map((d) => [d.event.sequence_number, d.meta.transport])).toEqual([
      [1, 'sse'], [2, 'websocket'], [3, 'websocket'], [4, 'sse'],
    ]);
  });

  it('reports which transports brought an event and how many copies were dropped', async () => {
    const t = setup();
    const { ws, es } = await connectBoth(t);
    es.emit(streamEvent(9));
    ws.emit(streamEvent(9));
    ws.emit(streamEvent(9));
    expect(t.delivered.at(-1)?.meta).toEqual({ transport: 'sse', transports: ['sse'], duplicatesOfThisEvent: 0 });
    expect(t.duplicates.map((d) => d.meta)).toEqual([
      { transport: 'websocket', transports: ['sse', 'websocket'], duplicatesOfThisEvent: 1 },
      { transport: 'websocket', transports: ['sse', 'websocket'], duplicatesOfThisEvent: 2 },
    ]);
    expect(t.conn.deliveryRecord(9)).toEqual({ transports: ['sse', 'websocket'], duplicates: 2 });
  });

  it('does not lose what the slower transport brings below the faster one\'s position', async () => {
    const t = setup();
    const { ws, es } = await connectBoth(t);
    ws.emit(streamEvent(60));
    ws.emit(streamEvent(61));
    es.emit(streamEvent(58));
    es.emit(streamEvent(59));
    es.emit(streamEvent(60));
    es.emit(streamEvent(61));
    expect(t.streamSeqs()).toEqual([60, 61, 58, 59]);
  });

  it('passes every connection-local event through, never deduplicated', async () => {
    const t = setup();
    const { ws, es } = await connectBoth(t);
    const hb = { event_type: 'heartbeat', timestamp: 'same', data: {} };
    ws.emit(hb);
    es.emit(hb);
    ws.emit(hb);
    ws.emit({ event_type: 'pong' });
    ws.emit({ event_type: 'pong' });
    es.emit({ event_type: 'error', data: { error_type: 'rate_limit_error', message: 'slow down', details: {} } });
    es.emit({ event_type: 'error', data: { error_type: 'rate_limit_error', message: 'slow down', details: {} } });
    expect(t.localTypes()).toEqual([
      'connected', 'connected', 'heartbeat', 'heartbeat', 'heartbeat', 'pong', 'pong', 'error', 'error',
    ]);
    expect(t.delivered.filter((d) => d.event.event_type === 'heartbeat').map((d) => d.meta.transport))
      .toEqual(['websocket', 'sse', 'websocket']);
    expect(t.duplicates).toHaveLength(0);
    expect(t.conn.stats.localEvents).toBe(9);
  });

  it('ignores frames that are not events, without dropping the connection', async () => {
    const errors: unknown[] = [];
    const t = setup({ onError: (e) => errors.push(e) });
    const { ws } = await connectBoth(t);
    ws.onmessage?.({ data: 'not json' });
    ws.onmessage?.({ data: '[1,2]' });
    ws.emit(streamEvent(1));
    expect(errors).toHaveLength(2);
    expect(t.streamSeqs()).toEqual([1]);
    expect(t.conn.isConnected).toBe(true);
  });
});

describe('state', () => {
  it('goes connecting -> connected with one transport -> reconnecting when both drop -> connected', async () => {
    const t = setup();
    expect(t.conn.state).toBe('idle');
    t.conn.connect();
    expect(t.conn.state).toBe('connecting');
    expect(t.conn.isConnecting).toBe(true);
    await flush();
    const ws = lastWs();
    const es = lastEs();
    ws.open();
    expect(t.conn.isConnected).toBe(false); // the socket is open, but the server has not said `connected`
    ws.emit(connectedEvent('websocket'));
    expect(t.conn.state).toBe('connected');
    expect(t.conn.isConnected).toBe(true);
    es.open();
    es.emit(connectedEvent('sse'));
    ws.drop(1006);
    expect(t.conn.state).toBe('connected'); // SSE is still up
    es.drop();
    expect(t.conn.state).toBe('reconnecting');
    expect(t.conn.isConnected).toBe(false);
    expect(t.conn.isConnecting).toBe(true);
    await advance(500);
    lastEs().open();
    lastEs().emit(connectedEvent('sse'));
    expect(t.conn.state).toBe('connected');
    expect(t.states).toEqual(['connecting', 'connected', 'reconnecting', 'connected']);
  });

  it('disconnect closes everything and nothing reconnects', async () => {
    const t = setup();
    const { ws, es } = await connectBoth(t);
    t.conn.disconnect();
    expect(ws.closedByClient).toBe(true);
    expect(es.closedByClient).toBe(true);
    expect(t.conn.state).toBe('idle');
    await advance(120_000);
    expect(FakeWebSocket.instances).toHaveLength(1);
    expect(FakeEventSource.instances).toHaveLength(1);
    expect(t.conn.connectionHealth.overall).toBe('no_connections');
  });
});

describe('reconnecting', () => {
  it('waits a full-jitter backoff that doubles per failure and resets after `connected`', async () => {
    const t = setup({ transports: ['websocket'] });
    t.conn.connect();
    await flush();
    lastWs().drop(1006); // attempt 0 failed: next within 500 ms
    await advance(499);
    expect(FakeWebSocket.instances).toHaveLength(1);
    await advance(1);
    expect(FakeWebSocket.instances).toHaveLength(2);
    lastWs().drop(1006); // then within 1000 ms
    await advance(999);
    expect(FakeWebSocket.instances).toHaveLength(2);
    await advance(1);
    expect(FakeWebSocket.instances).toHaveLength(3);
    lastWs().open();
    lastWs().emit(connectedEvent('websocket'));
    lastWs().drop(1006); // reset: within 500 ms again
    await advance(500);
    expect(FakeWebSocket.instances).toHaveLength(4);
  });

  it('uses the injected random draw for jitter', async () => {
    const t = setup({ transports: ['sse'], random: () => 0.1 });
    t.conn.connect();
    await flush();
    lastEs().drop();
    await advance(50);
    expect(FakeEventSource.instances).toHaveLength(2);
  });

  it('never waits more than 20 s between attempts', async () => {
    const t = setup({ transports: ['websocket'] });
    t.conn.connect();
    await flush();
    for (let i = 0; i < 12; i++) {
      const before = FakeWebSocket.instances.length;
      lastWs().drop(1006);
      await advance(20_000);
      expect(FakeWebSocket.instances).toHaveLength(before + 1);
    }
  });

  it('gives up after maxAttempts consecutive failures', async () => {
    const t = setup({ transports: ['websocket'], maxAttempts: 2 });
    t.conn.connect();
    await flush();
    lastWs().drop(1006);
    await advance(20_000);
    lastWs().drop(1006);
    await advance(20_000);
    lastWs().drop(1006);
    await advance(60_000);
    expect(FakeWebSocket.instances).toHaveLength(3);
    expect(t.conn.state).toBe('stopped');
  });

  it('each transport reconnects on its own', async () => {
    const t = setup();
    const { es } = await connectBoth(t);
    es.drop();
    await advance(500);
    expect(FakeEventSource.instances).toHaveLength(2);
    expect(FakeWebSocket.instances).toHaveLength(1);
  });

  it('resumes both transports from the last sequence number delivered', async () => {
    const t = setup({ sessionId: 's1' });
    const { ws, es } = await connectBoth(t);
    ws.emit(streamEvent(41));
    ws.emit(streamEvent(42));
    es.emit(streamEvent(41));
    ws.drop(1006);
    es.drop();
    await advance(500);
    expect(lastWs().url).toBe('ws://game.test:8000/api/ws?session_id=s1&last_event_id=42');
    expect(lastEs().url).toBe('http://game.test:8000/sse/p1?token=tok4&session_id=s1&last_event_id=42');
    // The replay of 42 on the new SSE stream is a duplicate; 43 is new.
    lastEs().emit(streamEvent(42));
    lastEs().emit(streamEvent(43));
    expect(t.streamSeqs()).toEqual([41, 42, 43]);
  });

  it('starts from resumeFrom, and does not redeliver what an earlier page saw', async () => {
    const t = setup({ transports: ['websocket'], resumeFrom: 10 });
    t.conn.connect();
    await flush();
    expect(lastWs().url).toBe('ws://game.test:8000/api/ws?last_event_id=10');
    lastWs().emit(streamEvent(10));
    lastWs().emit(streamEvent(11));
    expect(t.streamSeqs()).toEqual([11]);
  });

  it('asks getToken again before every reconnect', async () => {
    const t = setup({ transports: ['sse'] });
    t.conn.connect();
    await flush();
    lastEs().emit(connectedEvent('sse'));
    lastEs().emit({ event_type: 'token_expired' });
    lastEs().drop();
    await advance(500);
    expect(t.getToken).toHaveBeenCalledTimes(2);
    expect(lastEs().url).toContain('token=tok2');
  });

  it('reconnects with a fresh token after close 1008', async () => {
    const t = setup({ transports: ['websocket'] });
    t.conn.connect();
    await flush();
    lastWs().emit(connectedEvent('websocket'));
    lastWs().emit({ event_type: 'token_expired' });
    lastWs().drop(1008, 'token expired');
    await advance(500);
    expect(FakeWebSocket.instances).toHaveLength(2);
    expect(lastWs().protocols).toEqual(['bearer', 'tok2']);
  });

  it('retries when getToken fails', async () => {
    let calls = 0;
    const errors: unknown[] = [];
    const t = setup({
      transports: ['websocket'],
      getToken: async () => {
        calls += 1;
        if (calls === 1) throw new Error('auth server down');
        return 'late';
      },
      onError: (e) => errors.push(e),
    });
    t.conn.connect();
    await flush();
    expect(FakeWebSocket.instances).toHaveLength(0);
    expect(errors).toHaveLength(1);
    await advance(500);
    expect(lastWs().protocols).toEqual(['bearer', 'late']);
  });

  it('reconnects and resumes after 4008 slow consumer', async () => {
    const t = setup({ transports: ['websocket'] });
    t.conn.connect();
    await flush();
    lastWs().emit(connectedEvent('websocket'));
    lastWs().emit(streamEvent(5));
    lastWs().drop(4008);
    await advance(500);
    expect(lastWs().url).toContain('last_event_id=5');
  });

  it('waits reconnect_after_ms after server_shutdown before the backoff starts', async () => {
    const t = setup({ transports: ['websocket'] });
    t.conn.connect();
    await flush();
    lastWs().emit(connectedEvent('websocket'));
    lastWs().emit({ event_type: 'server_shutdown', data: { reconnect_after_ms: 3000 } });
    lastWs().drop(1001);
    await advance(3499);
    expect(FakeWebSocket.instances).toHaveLength(1);
    await advance(1);
    expect(FakeWebSocket.instances).toHaveLength(2);
  });

  it('stops only the transport that a newer connection replaced (4002)', async () => {
    const t = setup();
    const { ws, es } = await connectBoth(t);
    ws.emit({ event_type: 'connection_replaced' });
    ws.drop(4002);
    await advance(30_000); // past any backoff, short of the SSE watchdog (3 x 15 s)
    expect(FakeWebSocket.instances).toHaveLength(1);
    expect(t.conn.state).toBe('connected');
    es.drop();
    await advance(500);
    expect(FakeEventSource.instances).toHaveLength(2);
  });

  it('an SSE stream that ends after connection_replaced is not reopened', async () => {
    const t = setup({ transports: ['sse'] });
    t.conn.connect();
    await flush();
    lastEs().emit(connectedEvent('sse'));
    lastEs().emit({ event_type: 'connection_replaced' });
    lastEs().drop();
    await advance(60_000);
    expect(FakeEventSource.instances).toHaveLength(1);
    expect(t.conn.state).toBe('stopped');
  });

  it('passes recovery:false to the app as a resync signal', async () => {
    const t = setup({ transports: ['websocket'] });
    t.conn.connect();
    await flush();
    lastWs().emit(connectedEvent('websocket'));
    lastWs().emit({ event_type: 'recovery', data: { recovered: true, from_sequence_number: 3, replayed: 0 } });
    expect(t.resyncs).toHaveLength(0);
    lastWs().emit({ event_type: 'recovery', data: { recovered: false, from_sequence_number: 3, replayed: 256 } });
    expect(t.resyncs).toEqual([{ transport: 'websocket', fromSequenceNumber: 3, replayed: 256 }]);
    expect(t.localTypes()).toEqual(['connected', 'recovery', 'recovery']);
  });
});

describe('sessions', () => {
  it('session_terminated from elsewhere stops every transport and reports the new session', async () => {
    const t = setup();
    const { ws, es } = await connectBoth(t);
    es.emit({ event_type: 'session_terminated', data: { reason: 'new_session', session_id: 's2' } });
    expect(ws.closedByClient).toBe(true);
    es.drop();
    ws.drop(4001);
    await advance(120_000);
    expect(FakeWebSocket.instances).toHaveLength(1);
    expect(FakeEventSource.instances).toHaveLength(1);
    expect(t.sessions).toEqual(['s1', 's2']);
    expect(t.conn.sessionId).toBe('s2');
    expect(t.conn.state).toBe('stopped');
    expect(t.localTypes()).toContain('session_terminated');
  });

  it('close 4001 alone also stops reconnecting', async () => {
    const t = setup();
    const { ws, es } = await connectBoth(t);
    ws.drop(4001);
    expect(es.closedByClient).toBe(true);
    await advance(120_000);
    expect(FakeWebSocket.instances).toHaveLength(1);
    expect(FakeEventSource.instances).toHaveLength(1);
    expect(t.sessions.at(-1)).toBeNull();
    expect(t.conn.state).toBe('stopped');
    // The app may come back deliberately.
    t.conn.connect();
    await flush();
    expect(FakeWebSocket.instances).toHaveLength(2);
  });

  it('the connected event tells which session was joined', async () => {
    const t = setup();
    await connectBoth(t);
    expect(t.conn.sessionId).toBe('s1');
    expect(t.sessions).toEqual(['s1']); // once, though both transports said it
  });

  it('createNewSession survives its own termination and reconnects to the new id', async () => {
    const reply = {
      success: true,
      message: 'New game session established',
      session_id: 's2',
      previous_connections_disconnected: 2,
      timestamp: 't',
    };
    const { fn, calls } = fakeFetch({ status: 200, body: reply });
    let answer!: () => void;
    const answered = new Promise<void>((r) => (answer = r));
    const t = setup({
      sessionId: 's1',
      fetch: async (url, init) => {
        await answered;
        return fn(url, init);
      },
    });
    const { ws, es } = await connectBoth(t);
    ws.emit(streamEvent(7));
    const done = t.conn.createNewSession('s2');
    await flush();
    // The server ends our connections before its answer reaches us.
    ws.emit({ event_type: 'session_terminated', data: { reason: 'new_session', session_id: 's2' } });
    ws.drop(4001);
    es.emit({ event_type: 'session_terminated', data: { reason: 'new_session', session_id: 's2' } });
    es.drop();
    await advance(30_000);
    // Parked, not stopped, and not retrying on the replaced id.
    expect(FakeWebSocket.instances).toHaveLength(1);
    expect(FakeEventSource.instances).toHaveLength(1);
    expect(t.conn.state).toBe('reconnecting');
    answer();
    await expect(done).resolves.toEqual(reply);
    expect(calls[0]).toMatchObject({ method: 'POST', body: '{"session_id":"s2"}' });
    await flush();
    expect(FakeWebSocket.instances).toHaveLength(2);
    expect(FakeEventSource.instances).toHaveLength(2);
    expect(lastWs().url).toBe('ws://game.test:8000/api/ws?session_id=s2&last_event_id=7');
    expect(lastEs().url).toContain('session_id=s2');
    expect(t.sessions).toEqual(['s2']); // s1 was given, so joining it was no change
    lastWs().emit(connectedEvent('websocket', { session_id: 's2' }));
    expect(t.conn.state).toBe('connected');
  });

  it('a session_terminated that races a later createNewSession answer on an old socket is ignored', async () => {
    const reply = { success: true, message: 'ok', session_id: 's2', previous_connections_disconnected: 2, timestamp: 't' };
    const { fn } = fakeFetch({ status: 200, body: reply });
    const t = setup({ sessionId: 's1', fetch: fn });
    const { ws, es } = await connectBoth(t);
    await t.conn.createNewSession('s2');
    // The answer came first; the old sockets' goodbyes arrive after we already moved on.
    ws.emit({ event_type: 'session_terminated', data: { reason: 'new_session', session_id: 's2' } });
    ws.drop(4001);
    es.drop();
    await flush();
    expect(t.conn.state).not.toBe('stopped');
    expect(lastWs().url).toContain('session_id=s2');
    expect(lastWs().closedByClient).toBe(false);
  });

  it('a failed createNewSession puts transports its racing termination parked back on the old id', async () => {
    const { fn } = fakeFetch({ status: 503, body: { error: true, error_type: 'connection_error', message: 'busy', details: {}, timestamp: 't' } });
    let answer!: () => void;
    const answered = new Promise<void>((r) => (answer = r));
    const t = setup({ sessionId: 's1', fetch: async (url, init) => { await answered; return fn(url, init); } });
    const { ws } = await connectBoth(t);
    const done = t.conn.createNewSession('s2');
    await flush();
    ws.emit({ event_type: 'session_terminated', data: { reason: 'new_session', session_id: 's2' } });
    ws.drop(4001);
    answer();
    await expect(done).rejects.toMatchObject({ errorType: 'connection_error', status: 503 });
    await flush();
    expect(FakeWebSocket.instances).toHaveLength(2);
    expect(lastWs().url).toBe('ws://game.test:8000/api/ws?session_id=s1');
    expect(t.conn.sessionId).toBe('s1');
  });

  it('createNewSession posts the id, or an empty body for a server-made one', async () => {
    const reply = (id: string) => ({
      status: 200,
      body: { success: true, message: 'ok', session_id: id, previous_connections_disconnected: 0, timestamp: 't' },
    });
    const { fn, calls } = fakeFetch(reply('chosen'), reply('server-made-id-0123456789'));
    const t = setup({ fetch: fn });
    await t.conn.createNewSession('chosen');
    await t.conn.createNewSession();
    expect(calls.map((c) => [c.method, c.url, c.body])).toEqual([
      ['POST', 'http://game.test:8000/api/connections/p1/session', '{"session_id":"chosen"}'],
      ['POST', 'http://game.test:8000/api/connections/p1/session', '{}'],
    ]);
    expect(calls[0]?.headers.Authorization).toBe('Bearer tok1');
    expect(t.conn.sessionId).toBe('server-made-id-0123456789');
    // Not connected, so nothing was opened.
    expect(FakeWebSocket.instances).toHaveLength(0);
  });

  it('a failed createNewSession throws the server error and keeps the session', async () => {
    const { fn } = fakeFetch({
      status: 409,
      body: { error: true, error_type: 'session_error', message: 'replaced', details: { session_id: 'old' }, timestamp: 'ts' },
    });
    const t = setup({ fetch: fn, sessionId: 's1' });
    const err = await t.conn.createNewSession('old').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DualconnError);
    expect(err).toMatchObject({
      errorType: 'session_error',
      status: 409,
      message: 'replaced',
      details: { session_id: 'old' },
      timestamp: 'ts',
    });
    expect(t.conn.sessionId).toBe('s1');
  });

  it('switchToSession reconnects with that id and posts nothing', async () => {
    const { fn, calls } = fakeFetch();
    const t = setup({ fetch: fn });
    const { ws, es } = await connectBoth(t);
    t.conn.switchToSession('other');
    await flush();
    expect(ws.closedByClient && es.closedByClient).toBe(true);
    expect(lastWs().url).toBe('ws://game.test:8000/api/ws?session_id=other');
    expect(lastEs().url).toContain('session_id=other');
    expect(calls).toHaveLength(0);
    expect(t.sessions.at(-1)).toBe('other');
    // A late event on the abandoned socket is ignored.
    ws.emit(streamEvent(99));
    expect(t.streamSeqs()).toEqual([]);
  });
});

describe('commands and REST', () => {
  it('sends over the WebSocket when it is open', async () => {
    const { fn, calls } = fakeFetch();
    const t = setup({ fetch: fn });
    const { ws } = await connectBoth(t);
    await expect(t.conn.sendCommand('game_command', { command: 'look' })).resolves.toEqual({ transport: 'websocket' });
    expect(ws.sent).toEqual(['{"type":"game_command","data":{"command":"look"}}']);
    expect(calls).toHaveLength(0);
  });

  it('falls back to POST /api/commands when the WebSocket is down', async () => {
    const { fn, calls } = fakeFetch({ status: 202, body: { success: true, accepted: true } });
    const t = setup({ fetch: fn });
    const { ws } = await connectBoth(t);
    ws.drop(1006);
    const res = await t.conn.sendCommand('chat', { text: 'hi' });
    expect(res).toEqual({ transport: 'http', status: 202, body: { success: true, accepted: true } });
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({
      url: 'http://game.test:8000/api/commands',
      method: 'POST',
      body: '{"type":"chat","data":{"text":"hi"}}',
    });
    expect(calls[0]?.headers.Authorization).toMatch(/^Bearer tok\d+$/);
    expect(calls[0]?.headers['Content-Type']).toBe('application/json');
    expect(ws.sent).toHaveLength(0);
  });

  it('uses HTTP for SSE-only clients', async () => {
    const { fn, calls } = fakeFetch({ status: 200, body: { success: true, pong: true } });
    const t = setup({ fetch: fn, transports: ['sse'] });
    t.conn.connect();
    await flush();
    const res = await t.conn.sendCommand('ping');
    expect(res).toEqual({ transport: 'http', status: 200, body: { success: true, pong: true } });
    expect(calls[0]?.body).toBe('{"type":"ping"}');
  });

  it('turns an error envelope into a DualconnError', async () => {
    const { fn } = fakeFetch({
      status: 429,
      body: { error: true, error_type: 'rate_limit_error', message: 'too many', details: { retry_after: 1 }, timestamp: 'ts' },
    });
    const t = setup({ fetch: fn, transports: ['sse'] });
    const err = await t.conn.sendCommand('chat', {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DualconnError);
    expect(err).toMatchObject({ errorType: 'rate_limit_error', status: 429, details: { retry_after: 1 } });
  });

  it('reports a non-envelope failure and a network failure as DualconnError too', async () => {
    const { fn } = fakeFetch({ status: 502, body: '<html>bad gateway</html>' });
    const t = setup({ fetch: fn });
    await expect(t.conn.getConnectionInfo()).rejects.toMatchObject({ errorType: 'http_error', status: 502 });
    const t2 = setup({ fetch: async () => { throw new TypeError('connection refused'); } });
    await expect(t2.conn.getConnectionInfo()).rejects.toMatchObject({ errorType: 'network_error', status: 0 });
  });

  it('getConnectionInfo GETs the player\'s connections with the token', async () => {
    const info = { player_id: 'p1', session_id: 's1' };
    const { fn, calls } = fakeFetch({ status: 200, body: info });
    const t = setup({ fetch: fn, playerId: 'a.b' });
    await expect(t.conn.getConnectionInfo()).resolves.toEqual(info);
    expect(calls[0]).toMatchObject({ method: 'GET', url: 'http://game.test:8000/api/connections/a.b' });
    expect(calls[0]?.headers.Authorization).toBe('Bearer tok1');
    expect(calls[0]?.body).toBeUndefined();
  });
});

describe('health', () => {
  it('is healthy with both up, degraded with one, no_connections with none', async () => {
    const t = setup();
    expect(t.conn.connectionHealth.overall).toBe('no_connections');
    t.conn.connect();
    await flush();
    lastWs().emit(connectedEvent('websocket'));
    expect(t.conn.connectionHealth.overall).toBe('degraded');
    expect(t.conn.connectionHealth.websocket.status).toBe('healthy');
    expect(t.conn.connectionHealth.sse.status).toBe('disconnected');
    lastEs().emit(connectedEvent('sse'));
    expect(t.conn.connectionHealth.overall).toBe('healthy');
    lastWs().drop(1006);
    lastEs().drop();
    expect(t.conn.connectionHealth.overall).toBe('no_connections');
    expect(t.healths.map((h) => h.overall)).toEqual(['degraded', 'healthy', 'degraded', 'no_connections']);
  });

  it('marks a transport unhealthy after two silent heartbeat intervals, and heartbeats heal it', async () => {
    const t = setup();
    t.conn.connect();
    await flush();
    lastWs().emit(connectedEvent('websocket', { heartbeat_interval_ms: 1000 }));
    lastEs().emit(connectedEvent('sse', { heartbeat_interval_ms: 1000 }));
    await advance(1000);
    lastWs().emit({ event_type: 'heartbeat' });
    lastEs().emit({ event_type: 'heartbeat' });
    await advance(1000);
    lastWs().emit({ event_type: 'heartbeat' }); // t=2000; SSE's last was at 1000
    expect(t.conn.connectionHealth.overall).toBe('healthy');
    await advance(999);
    expect(t.conn.connectionHealth.sse.status).toBe('healthy'); // exactly 2 intervals: not yet
    await advance(2);
    expect(t.conn.connectionHealth.sse.status).toBe('unhealthy');
    expect(t.conn.connectionHealth.websocket.status).toBe('healthy');
    expect(t.conn.connectionHealth.overall).toBe('degraded');
    lastEs().emit({ event_type: 'heartbeat' });
    expect(t.conn.connectionHealth.sse).toEqual({ status: 'healthy', lastHeartbeatAt: Date.now() });
    expect(t.conn.connectionHealth.overall).toBe('healthy');
    // Only a WebSocket pong now: SSE goes silent, and then both are.
    await advance(1000);
    lastWs().emit({ event_type: 'pong' });
    await advance(1500);
    expect(t.conn.connectionHealth.websocket.status).toBe('healthy');
    expect(t.conn.connectionHealth.sse.status).toBe('unhealthy');
    await advance(600);
    expect(t.conn.connectionHealth.websocket.status).toBe('unhealthy');
    expect(t.conn.connectionHealth.overall).toBe('unhealthy');
  });

  it('drops and reconnects a transport silent for three intervals', async () => {
    const t = setup({ transports: ['sse'] });
    t.conn.connect();
    await flush();
    const es = lastEs();
    es.emit(connectedEvent('sse', { heartbeat_interval_ms: 1000 }));
    await advance(3001);
    expect(es.closedByClient).toBe(true);
    expect(t.conn.state).toBe('reconnecting');
    await advance(500);
    expect(FakeEventSource.instances).toHaveLength(2);
  });
});

describe('dropTransport and transportStates', () => {
  it('reports each transport\'s phase, and disabled for one not asked for', async () => {
    const t = setup({ transports: ['sse'] });
    expect(t.conn.transportStates).toEqual({ websocket: 'disabled', sse: 'idle' });
    t.conn.connect();
    await flush();
    expect(t.conn.transportStates.sse).toBe('connecting');
    lastEs().open();
    expect(t.conn.transportStates.sse).toBe('connecting'); // open socket, no `connected` yet
    lastEs().emit(connectedEvent('sse'));
    expect(t.conn.transportStates.sse).toBe('open');
    t.conn.disconnect();
    expect(t.conn.transportStates.sse).toBe('idle');
  });

  it('drops one transport, keeps the other, and reconnects it by itself with resume', async () => {
    const t = setup({ sessionId: 's1' });
    const { ws, es } = await connectBoth(t);
    es.emit(streamEvent(7));
    expect(t.conn.dropTransport('websocket', { downForMs: 3_000 })).toBe(true);
    expect(ws.closedByClient).toBe(true);
    expect(es.closedByClient).toBe(false);
    expect(t.conn.transportStates).toEqual({ websocket: 'waiting', sse: 'open' });
    expect(t.conn.state).toBe('connected');
    expect(t.conn.connectionHealth.websocket.status).toBe('disconnected');
    expect(t.conn.connectionHealth.overall).toBe('degraded');
    // A late frame from the dropped socket is ignored.
    ws.emit(streamEvent(8));
    expect(t.streamSeqs()).toEqual([7]);
    // Held down for downForMs, then the usual backoff (0.5 s at most for the first attempt).
    await advance(3_000);
    expect(FakeWebSocket.instances).toHaveLength(1);
    await advance(500);
    expect(FakeWebSocket.instances).toHaveLength(2);
    expect(lastWs().url).toBe('ws://game.test:8000/api/ws?session_id=s1&last_event_id=7');
    expect(t.conn.transportStates.websocket).toBe('connecting');
    lastWs().open();
    lastWs().emit(connectedEvent('websocket'));
    expect(t.conn.transportStates.websocket).toBe('open');
    expect(t.conn.connectionHealth.overall).toBe('healthy');
  });

  it('does nothing for a transport that is not enabled or not running', async () => {
    const t = setup({ transports: ['websocket'] });
    expect(t.conn.dropTransport('websocket')).toBe(false); // not connected yet
    t.conn.connect();
    await flush();
    expect(t.conn.dropTransport('sse')).toBe(false);
    expect(t.conn.dropTransport('websocket')).toBe(true);
    t.conn.disconnect();
    expect(t.conn.dropTransport('websocket')).toBe(false);
    await advance(30_000);
    expect(FakeWebSocket.instances).toHaveLength(1);
  });
});

describe('listeners per event type', () => {
  it('calls every listener of a type once per delivered event, each with its own unsubscribe', async () => {
    const t = setup();
    const a: number[] = [];
    const b: number[] = [];
    const all: string[] = [];
    const offA = t.conn.on('chat', (e) => a.push(e.sequence_number!));
    t.conn.on('chat', (e) => b.push(e.sequence_number!));
    t.conn.on('*', (e) => all.push(e.event_type));
    const { ws, es } = await connectBoth(t);
    ws.emit(streamEvent(1));
    es.emit(streamEvent(1)); // the duplicate reaches no listener
    offA();
    offA(); // twice is harmless
    ws.emit(streamEvent(2));
    expect(a).toEqual([1]);
    expect(b).toEqual([1, 2]);
    expect(all).toEqual(['connected', 'connected', 'chat', 'chat']);
  });

  it('lets a listener unsubscribe itself while being called, and survives one that throws', async () => {
    const t = setup();
    const seen: string[] = [];
    const off = t.conn.on('chat', () => {
      seen.push('once');
      off();
    });
    t.conn.on('chat', () => {
      throw new Error('app bug');
    });
    t.conn.on('chat', () => seen.push('after'));
    const { ws } = await connectBoth(t);
    const errors: unknown[] = [];
    const catcher = (e: unknown) => errors.push(e);
    process.on('uncaughtException', catcher);
    ws.emit(streamEvent(1));
    ws.emit(streamEvent(2));
    await flush();
    process.off('uncaughtException', catcher);
    expect(seen).toEqual(['once', 'after', 'after']);
  });
});

describe('why it stopped', () => {
  const stopped = (t: ReturnType<typeof setup>) => ({ state: t.conn.state, reason: t.conn.stopReason });

  it('a session started elsewhere: session_replaced with the new id', async () => {
    const reasons: unknown[] = [];
    const t = setup({ onStop: (r) => reasons.push(r) });
    const { ws } = await connectBoth(t);
    ws.emit({ event_type: 'session_terminated', data: { session_id: 's9' } });
    expect(stopped(t)).toEqual({ state: 'stopped', reason: { reason: 'session_replaced', sessionId: 's9' } });
    expect(reasons).toHaveLength(1);
    t.conn.connect();
    expect(t.conn.stopReason).toBeNull();
  });

  it('a refused handshake whose token REST also refuses: token_rejected, no more retries', async () => {
    const { fn, calls } = fakeFetch({
      status: 401,
      body: { error: true, error_type: 'authentication_error', message: 'bad', details: {}, timestamp: 't' },
    });
    const t = setup({ fetch: fn, diagnoseRefusals: true, transports: ['websocket'] });
    t.conn.connect();
    await flush();
    lastWs().drop(1006); // what a browser shows for a 401 handshake
    await flush();
    expect(calls[0]).toMatchObject({ method: 'GET', url: 'http://game.test:8000/api/connections/p1/session' });
    expect(stopped(t)).toEqual({
      state: 'stopped',
      reason: { reason: 'token_rejected', status: 401, transport: 'websocket' },
    });
    await advance(60_000);
    expect(FakeWebSocket.instances).toHaveLength(1);
  });

  it('a refused handshake for a session that is no longer current: session_replaced with the current id', async () => {
    const { fn } = fakeFetch({
      status: 200,
      body: { player_id: 'p1', session_id: 'newer', session_created: 't', active_connections: 1, connection_types: ['sse'] },
    });
    const t = setup({ fetch: fn, diagnoseRefusals: true, sessionId: 'old', transports: ['sse'] });
    t.conn.connect();
    await flush();
    lastEs().drop(); // a 409 that EventSource hides
    await flush();
    expect(stopped(t)).toEqual({ state: 'stopped', reason: { reason: 'session_replaced', sessionId: 'newer' } });
    expect(t.conn.sessionId).toBe('newer');
  });

  it('a failure the probe cannot explain keeps retrying', async () => {
    const { fn } = fakeFetch({
      status: 200,
      body: { player_id: 'p1', session_id: 's1', session_created: 't', active_connections: 0, connection_types: [] },
    });
    const t = setup({ fetch: fn, diagnoseRefusals: true, sessionId: 's1', transports: ['websocket'] });
    t.conn.connect();
    await flush();
    lastWs().drop(1006);
    await flush();
    expect(t.conn.state).toBe('connecting');
    await advance(1_000);
    expect(FakeWebSocket.instances).toHaveLength(2);
  });

  it('every transport out of attempts: gave_up; every transport evicted: connection_replaced', async () => {
    const t = setup({ maxAttempts: 1 });
    t.conn.connect();
    await flush();
    lastWs().drop(1006);
    lastEs().drop();
    await advance(1_000);
    lastWs().drop(1006);
    lastEs().drop();
    await flush();
    expect(stopped(t)).toEqual({ state: 'stopped', reason: { reason: 'gave_up' } });

    resetFakes();
    const u = setup();
    const { ws, es } = await connectBoth(u);
    ws.emit({ event_type: 'connection_replaced', data: {} });
    ws.drop(4002);
    expect(u.conn.state).toBe('connected');
    es.emit({ event_type: 'connection_replaced', data: {} });
    es.drop();
    expect(stopped(u)).toEqual({ state: 'stopped', reason: { reason: 'connection_replaced' } });
  });

  it('publishes a new snapshot only when something it holds changes', async () => {
    const t = setup();
    let notified = 0;
    const unsubscribe = t.conn.subscribe(() => notified++);
    const first = t.conn.getSnapshot();
    expect(t.conn.getSnapshot()).toBe(first);
    const { ws } = await connectBoth(t);
    const connected = t.conn.getSnapshot();
    expect(connected).not.toBe(first);
    expect(connected.state).toBe('connected');
    const count = notified;
    ws.emit(streamEvent(1));
    expect(t.conn.getSnapshot()).toBe(connected);
    expect(notified).toBe(count);
    unsubscribe();
    t.conn.disconnect();
    expect(notified).toBe(count);
  });
});
