// Two real dualconn nodes sharing one Redis: the client's WebSocket lands on one node and its
// SSE stream on the other, as a load balancer may place them. Every event still arrives over
// both, and the app sees each exactly once. Needs a Redis (scripts/redis-setup.sh starts one;
// DUALCONN_TEST_REDIS_URL names it).
import { createHmac } from 'node:crypto';

import { EventSource } from 'eventsource';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { GameConnection } from '../src/index.js';
import type { EventSourceConstructor, TransportKind, WebSocketConstructor } from '../src/types.js';
import { post, unique, until } from './helpers.js';
import { ADMIN_KEY, startServer, type Server } from './server.js';

const REDIS = process.env.DUALCONN_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
// A shared signing key: a token minted for one node is valid on the other.
const SECRET = 'client-cluster-test-secret-0123456789abcdef';

function mint(playerId: string): string {
  const part = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const body = `${part({ alg: 'HS256', typ: 'JWT' })}.${part({
    sub: playerId,
    exp: Math.floor(Date.now() / 1000) + 3600,
  })}`;
  return `${body}.${createHmac('sha256', SECRET).update(body).digest('base64url')}`;
}

/** The same path and query on another node. */
function on(node: Server, url: string): string {
  const moved = new URL(url);
  const target = new URL(node.base);
  moved.host = target.host;
  return moved.toString();
}

let a: Server;
let b: Server;

beforeAll(async () => {
  const prefix = `dcclient:${process.pid}:${Date.now()}`;
  const node = (id: string) =>
    startServer({
      DUALCONN_JWT_SECRET: SECRET,
      DUALCONN_REDIS_URL: REDIS,
      DUALCONN_REDIS_PREFIX: prefix,
      DUALCONN_NODE_ID: id,
    });
  [a, b] = await Promise.all([node('a'), node('b')]);
  // Ready once registered in Redis and subscribed to its channel.
  for (const n of [a, b]) {
    const deadline = Date.now() + 20_000;
    while ((await fetch(`${n.base}/health/ready`)).status !== 200) {
      if (Date.now() > deadline) throw new Error(`node never became ready:\n${n.log()}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
});

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
});

describe('a cluster of two nodes', () => {
  it('WebSocket on one node and SSE on the other: every event over both, each once in the app', async () => {
    const player = unique('spread');
    const OnA = class extends WebSocket {
      constructor(url: string, protocols?: string | string[]) {
        super(on(a, url), protocols);
      }
    };
    const OnB = class extends EventSource {
      constructor(url: string) {
        super(on(b, url));
      }
    };
    const delivered: number[] = [];
    const copies: Record<TransportKind, number[]> = { websocket: [], sse: [] };
    const conn = new GameConnection({
      playerId: player,
      baseUrl: a.base,
      getToken: () => mint(player),
      WebSocket: OnA as unknown as WebSocketConstructor,
      EventSource: OnB as unknown as EventSourceConstructor,
      onEvent: (event, meta) => {
        if (event.sequence_number !== undefined) {
          delivered.push(event.sequence_number);
          copies[meta.transport].push(event.sequence_number);
        }
      },
      onDuplicate: (event, meta) => copies[meta.transport].push(event.sequence_number!),
    });
    try {
      conn.connect();
      await until(
        () => conn.transportStates.websocket === 'open' && conn.transportStates.sse === 'open',
        'both transports to open',
      );

      // The backend publishes through either node.
      const published: number[] = [];
      for (let i = 0; i < 30; i++) {
        const node = i % 2 === 0 ? a : b;
        const body = await post(
          node.base,
          '/api/publish',
          { player_ids: [player], event_type: 'tick', data: { i } },
          ADMIN_KEY,
        );
        published.push((body.events as Array<{ sequence_number: number }>)[0]!.sequence_number);
      }
      const last = published.at(-1)!;
      await until(
        () => copies.websocket.at(-1) === last && copies.sse.at(-1) === last,
        'both nodes to deliver the last event',
      );
      expect(delivered).toEqual(published);
      expect(copies.websocket).toEqual(published);
      expect(copies.sse).toEqual(published);
      expect(conn.stats.duplicatesDropped).toBe(published.length);
    } finally {
      conn.disconnect();
    }
  });
});
