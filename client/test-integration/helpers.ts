// What the integration tests share: real HTTP calls to the server and a GameConnection wired
// to Node's `ws` and `eventsource`.
import { EventSource } from 'eventsource';
import WebSocket from 'ws';

import { GameConnection, type GameConnectionOptions } from '../src/index.js';
import type { EventSourceConstructor, WebSocketConstructor } from '../src/types.js';
import { ADMIN_KEY } from './server.js';

export async function post(base: string, urlPath: string, body: unknown, token?: string) {
  const res = await fetch(base + urlPath, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`POST ${urlPath}: HTTP ${res.status} ${text}`);
  return JSON.parse(text) as Record<string, unknown>;
}

export async function get(base: string, urlPath: string, token = ADMIN_KEY) {
  const res = await fetch(base + urlPath, { headers: { authorization: `Bearer ${token}` } });
  const text = await res.text();
  if (!res.ok) throw new Error(`GET ${urlPath}: HTTP ${res.status} ${text}`);
  return JSON.parse(text) as Record<string, any>;
}

export async function devToken(base: string, playerId: string): Promise<string> {
  const body = await post(base, '/auth/dev-token', { player_id: playerId });
  return body.access_token as string;
}

/** Publishes one event to one player, as a game backend would; returns its sequence number. */
export async function publish(base: string, playerId: string, data: unknown): Promise<number> {
  const body = await post(
    base,
    '/api/publish',
    { player_ids: [playerId], event_type: 'tick', data },
    ADMIN_KEY,
  );
  const events = body.events as Array<{ player_id: string; sequence_number: number }>;
  return events[0]!.sequence_number;
}

/** Counts every socket and stream the client opens. */
export const opened = { websocket: 0, sse: 0 };

class CountingWebSocket extends WebSocket {
  constructor(url: string, protocols?: string | string[]) {
    super(url, protocols);
    opened.websocket += 1;
  }
}

class CountingEventSource extends EventSource {
  constructor(url: string) {
    super(url);
    opened.sse += 1;
  }
}

export function client(
  base: string,
  playerId: string,
  options: Partial<GameConnectionOptions> = {},
): GameConnection {
  return new GameConnection({
    playerId,
    baseUrl: base,
    getToken: () => devToken(base, playerId),
    // The shapes match the browser's; the library typings differ in details we do not use.
    WebSocket: CountingWebSocket as unknown as WebSocketConstructor,
    EventSource: CountingEventSource as unknown as EventSourceConstructor,
    ...options,
  });
}

/**
 * Waits until `predicate` holds, checking every few milliseconds, for at most `timeoutMs`.
 * This waits for a condition, not for time: it returns as soon as the condition is true.
 */
export async function until(
  predicate: () => boolean,
  what: string,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export function unique(prefix: string): string {
  return `${prefix}_${Math.random().toString(36).slice(2, 10)}`;
}
