import { vi } from 'vitest';

import { GameConnection, type GameConnectionOptions } from '../src/GameConnection.js';
import type { ConnectionHealth, ConnectionState, DualconnEvent, EventMeta } from '../src/types.js';
import { FakeEventSource, FakeWebSocket } from './fakes.js';

/** Lets pending promises (getToken, fetch) settle without moving the clock. */
export const flush = () => vi.advanceTimersByTimeAsync(0);
export const advance = (ms: number) => vi.advanceTimersByTimeAsync(ms);

export function setup(over: Partial<GameConnectionOptions> = {}) {
  let n = 0;
  const getToken = vi.fn(async () => `tok${++n}`);
  const delivered: Array<{ event: DualconnEvent; meta: EventMeta }> = [];
  const duplicates: Array<{ event: DualconnEvent; meta: EventMeta }> = [];
  const states: ConnectionState[] = [];
  const sessions: Array<string | null> = [];
  const healths: ConnectionHealth[] = [];
  const resyncs: unknown[] = [];
  const conn = new GameConnection({
    playerId: 'p1',
    baseUrl: 'http://game.test:8000',
    getToken,
    WebSocket: FakeWebSocket,
    EventSource: FakeEventSource,
    // The top of each backoff range, so the tests know exactly when a retry is due.
    random: () => 1,
    // Off unless a test is about it: the probe would take the fake fetch's queued answers.
    diagnoseRefusals: false,
    onEvent: (event, meta) => delivered.push({ event, meta }),
    onDuplicate: (event, meta) => duplicates.push({ event, meta }),
    onStateChange: (s) => states.push(s),
    onSessionChange: (id) => sessions.push(id),
    onConnectionHealthUpdate: (h) => healths.push(h),
    onResync: (info) => resyncs.push(info),
    ...over,
  });
  const streamSeqs = () =>
    delivered.filter((d) => d.event.sequence_number !== undefined).map((d) => d.event.sequence_number);
  const localTypes = () =>
    delivered.filter((d) => d.event.sequence_number === undefined).map((d) => d.event.event_type);
  return { conn, getToken, delivered, duplicates, states, sessions, healths, resyncs, streamSeqs, localTypes };
}
