// GameConnection against the real dualconn binary, over real sockets, with Node's `ws` and
// `eventsource` as the platform classes. Run with `npm run test:integration` (after
// `cargo build -p dualconn`).
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import type { GameConnection } from '../src/index.js';
import type { DualconnEvent, EventMeta, TransportKind } from '../src/types.js';
import { client, devToken, get, opened, post, publish, unique, until } from './helpers.js';
import { ADMIN_KEY, startServer, type Server } from './server.js';

let server: Server;
const live = new Set<GameConnection>();

beforeAll(async () => {
  server = await startServer({
    // Room for everything published while both transports are down in the drop test, so a
    // resume is never beyond history (which would be a resync, not a loss, but not this test).
    DUALCONN_HISTORY_SIZE: '4096',
  });
});

afterEach(() => {
  for (const conn of live) conn.disconnect();
  live.clear();
});

afterAll(async () => {
  await server?.stop();
});

function track(conn: GameConnection): GameConnection {
  live.add(conn);
  return conn;
}

const bothOpen = (conn: GameConnection) =>
  conn.transportStates.websocket === 'open' && conn.transportStates.sse === 'open';

describe('exactly once, against the real server', () => {
  it('delivers every event once, in order per transport, while each transport is dropped again and again', async () => {
    const player = unique('dropper');
    const delivered: number[] = [];
    // Every copy each transport brought, fresh or duplicate, in arrival order.
    const copies: Record<TransportKind, number[]> = { websocket: [], sse: [] };
    const recoveries: Array<{ transport: TransportKind; recovered: unknown }> = [];
    const resyncs: unknown[] = [];
    const errors: unknown[] = [];
    const conn = track(
      client(server.base, player, {
        backoff: { baseMs: 20, capMs: 200 },
        onEvent: (event: DualconnEvent, meta: EventMeta) => {
          if (event.sequence_number !== undefined) {
            delivered.push(event.sequence_number);
            copies[meta.transport].push(event.sequence_number);
          } else if (event.event_type === 'recovery') {
            recoveries.push({
              transport: meta.transport,
              recovered: (event.data as { recovered?: unknown }).recovered,
            });
          }
        },
        onDuplicate: (event, meta) => copies[meta.transport].push(event.sequence_number!),
        onResync: (info) => resyncs.push(info),
        onError: (err) => errors.push(err),
      }),
    );
    conn.connect();
    await until(() => bothOpen(conn), 'both transports to open');

    // A game backend publishing as fast as it can, one request after another.
    const published: number[] = [];
    let publishing = true;
    const publisher = (async () => {
      let i = 0;
      while (publishing) published.push(await publish(server.base, player, { i: i++ }));
    })();

    const ROUNDS = 8;
    const plan: Array<TransportKind[]> = [];
    for (let r = 0; r < ROUNDS; r++) plan.push(['websocket'], ['sse'], ['websocket', 'sse']);
    for (const kinds of plan) {
      const mark = published.length;
      // Held down 30 ms so events are published while the transport(s) are away.
      for (const kind of kinds) expect(conn.dropTransport(kind, { downForMs: 30 })).toBe(true);
      for (const kind of kinds) expect(conn.transportStates[kind]).toBe('waiting');
      const before = { websocket: copies.websocket.length, sse: copies.sse.length };
      await until(() => bothOpen(conn), `${kinds.join('+')} to come back`);
      // Something was published while it was down, and the returning transport carries on.
      await until(() => published.length > mark + 5, 'publishes meanwhile');
      for (const kind of kinds) {
        await until(() => copies[kind].length > before[kind], `${kind} to carry events again`);
      }
      // Both up for a while, so both carry the same live events and dedup has work to do.
      const both = { websocket: copies.websocket.length, sse: copies.sse.length };
      await until(
        () => copies.websocket.length >= both.websocket + 20 && copies.sse.length >= both.sse + 20,
        'both transports to carry live events together',
      );
    }

    publishing = false;
    await publisher;
    const last = published[published.length - 1]!;
    await until(() => delivered.includes(last), 'the last published event');
    await until(
      () => copies.websocket.at(-1) === last && copies.sse.at(-1) === last,
      'both transports to catch up',
    );

    // Every published event, exactly once: nothing lost, nothing twice.
    expect(published.length).toBeGreaterThan(200);
    expect(new Set(delivered).size).toBe(delivered.length);
    expect([...delivered].sort((a, b) => a - b)).toEqual(published);
    // Each transport brought its copies in stream order, across all its reconnections.
    for (const kind of ['websocket', 'sse'] as const) {
      const seq = copies[kind];
      for (let i = 1; i < seq.length; i++) {
        if (seq[i]! <= seq[i - 1]!) {
          throw new Error(`${kind} went back from ${seq[i - 1]} to ${seq[i]} at copy ${i}`);
        }
      }
    }
    // Both transports really carried the stream, so the dedup was really exercised.
    const stats = conn.stats;
    expect(stats.delivered).toBe(published.length);
    expect(stats.firstBy.websocket).toBeGreaterThan(0);
    expect(stats.firstBy.sse).toBeGreaterThan(0);
    expect(stats.duplicatesDropped).toBeGreaterThan(ROUNDS * 3 * 10);
    expect(stats.duplicatesDropped).toBe(copies.websocket.length + copies.sse.length - delivered.length);
    // Every reconnection resumed from the cursor, and the server had everything.
    expect(recoveries.filter((r) => r.transport === 'websocket').length).toBeGreaterThanOrEqual(2 * ROUNDS);
    expect(recoveries.filter((r) => r.transport === 'sse').length).toBeGreaterThanOrEqual(2 * ROUNDS);
    expect(recoveries.every((r) => r.recovered === true)).toBe(true);
    expect(resyncs).toEqual([]);
    expect(errors).toEqual([]);
  });
});

describe('sessions', () => {
  it('a new session started elsewhere stops reconnection and fires onSessionChange', async () => {
    const player = unique('evicted');
    const sessions: Array<string | null> = [];
    const terminated: TransportKind[] = [];
    const conn = track(
      client(server.base, player, {
        backoff: { baseMs: 20, capMs: 100 },
        onSessionChange: (id) => sessions.push(id),
        onEvent: (event, meta) => {
          if (event.event_type === 'session_terminated') terminated.push(meta.transport);
        },
      }),
    );
    conn.connect();
    await until(() => bothOpen(conn), 'both transports to open');
    const first = conn.sessionId;
    expect(first).toMatch(/^[A-Za-z0-9_-]{22,}$/);
    expect(sessions).toEqual([first]); // learned from `connected`

    // "Elsewhere": another device of the same player, with its own token.
    const other = await post(
      server.base,
      `/api/connections/${player}/session`,
      {},
      await devToken(server.base, player),
    );
    expect(other.previous_connections_disconnected).toBe(2);
    const newId = other.session_id as string;
    expect(newId).not.toBe(first);

    await until(() => conn.state === 'stopped', 'the connection to stop');
    expect(sessions).toEqual([first, newId]);
    expect(conn.sessionId).toBe(newId);
    expect(terminated.length).toBeGreaterThanOrEqual(1);
    expect(conn.transportStates).toEqual({ websocket: 'stopped', sse: 'stopped' });

    // Nothing comes back. Proving an absence takes a wait: 1 s is ten times the backoff cap,
    // so a client that did retry would have tried several times by now.
    const count = { ...opened };
    await new Promise((r) => setTimeout(r, 1_000));
    expect(opened).toEqual(count);
    const info = await get(server.base, `/api/connections/${player}`, ADMIN_KEY);
    expect(info.presence.total_connections).toBe(0);
    expect(info.session_id).toBe(newId);
  });
});

describe('why it stopped, against the real server', () => {
  it('a token the server refuses: token_rejected, from the REST probe, and no more attempts', async () => {
    const player = unique('rejected');
    const reasons: unknown[] = [];
    const conn = track(
      client(server.base, player, {
        getToken: () => 'not-a-token',
        backoff: { baseMs: 20, capMs: 100 },
        onStop: (r) => reasons.push(r),
      }),
    );
    conn.connect();
    await until(() => conn.state === 'stopped', 'the connection to stop');
    expect(conn.stopReason).toMatchObject({ reason: 'token_rejected', status: 401 });
    expect(reasons).toHaveLength(1);
  });

  it('a stale tab asking for a replaced session: session_replaced with the current id, which it can adopt', async () => {
    const player = unique('stale');
    const token = await devToken(server.base, player);
    const made = await post(server.base, `/api/connections/${player}/session`, { session_id: 'first' }, token);
    expect(made.session_id).toBe('first');
    await post(server.base, `/api/connections/${player}/session`, { session_id: 'second' }, token);
    // The tab still holds `first`, which the server now answers with 409 on both transports.
    const conn = track(client(server.base, player, { sessionId: 'first', backoff: { baseMs: 20, capMs: 100 } }));
    conn.connect();
    await until(() => conn.state === 'stopped', 'the connection to stop');
    expect(conn.stopReason).toEqual({ reason: 'session_replaced', sessionId: 'second' });
    conn.switchToSession('second');
    await until(() => bothOpen(conn), 'both transports to open on the current session');
    expect(conn.sessionId).toBe('second');
  });
});

describe('sendCommand', () => {
  /** Waits for the demo world's answer to `command`. */
  function answers(conn: () => GameConnection | undefined) {
    const got: Array<{ event: DualconnEvent<any>; transport: TransportKind }> = [];
    return {
      got,
      onEvent: (event: DualconnEvent, meta: EventMeta) => {
        if (event.event_type === 'command_response') got.push({ event, transport: meta.transport });
      },
      conn,
    };
  }

  it('goes over the WebSocket when it is open, and the answer comes back as a stream event', async () => {
    const player = unique('speaker');
    const a = answers(() => undefined);
    const conn = track(client(server.base, player, { onEvent: a.onEvent }));
    conn.connect();
    await until(() => bothOpen(conn), 'both transports to open');
    expect(await conn.sendCommand('command', { command: 'look' })).toEqual({ transport: 'websocket' });
    await until(() => a.got.length === 1, 'the answer to look');
    const look = a.got[0]!.event;
    expect(look.data.command).toBe('look');
    expect(look.data.room.id).toBe('hall');
    expect(look.data.players).toContain(player);
    expect(typeof look.sequence_number).toBe('number');
  });

  it('goes over HTTP for an SSE-only client', async () => {
    const player = unique('sse_only');
    const a = answers(() => undefined);
    const conn = track(client(server.base, player, { transports: ['sse'], onEvent: a.onEvent }));
    conn.connect();
    await until(() => conn.transportStates.sse === 'open', 'the SSE stream to open');
    expect(conn.transportStates.websocket).toBe('disabled');
    const result = await conn.sendCommand('command', { command: 'go north' });
    expect(result).toEqual({ transport: 'http', status: 202, body: { success: true, accepted: true } });
    await until(() => a.got.length === 1, 'the answer to go north');
    expect(a.got[0]!.transport).toBe('sse');
    expect(a.got[0]!.event.data.room.id).toBe('library');
  });

  it('falls back to HTTP while the WebSocket is down, and the SSE stream brings the answer', async () => {
    const player = unique('fallback');
    const a = answers(() => undefined);
    const conn = track(client(server.base, player, { onEvent: a.onEvent }));
    conn.connect();
    await until(() => bothOpen(conn), 'both transports to open');
    conn.dropTransport('websocket', { downForMs: 60_000 });
    const result = await conn.sendCommand('command', { command: 'who' });
    expect(result.transport).toBe('http');
    await until(() => a.got.length === 1, 'the answer to who');
    expect(a.got[0]!.transport).toBe('sse');
    expect(a.got[0]!.event.data.players).toContainEqual({ player_id: player, room: 'hall' });
  });
});
