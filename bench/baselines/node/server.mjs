// A Node.js peer of dualconn for the benchmarks: what a game team would otherwise write.
// The same wire subset: GET /api/ws (token in the `bearer, <jwt>` subprotocol, answered with
// `bearer`), GET /sse/{player_id} (token in `Authorization: Bearer` or `?token=`),
// POST /api/publish (admin key), the same envelope and SSE framing (SPEC §3–§4).
// Written as a good Node engineer would: each event is serialized once per player and shared
// by that player's sockets, a broadcast serializes its data once, and every socket has a
// bounded send buffer (a slow consumer is closed, 4008 on WebSocket).
//
//   PORT=8200 JWT_SECRET=... ADMIN_KEYS=... node server.mjs

import http from 'node:http';
import crypto from 'node:crypto';
import { WebSocketServer } from 'ws';

const PORT = Number(process.env.PORT || 8200);
const HOST = process.env.HOST || '0.0.0.0';
const SECRET = process.env.JWT_SECRET || process.env.DUALCONN_JWT_SECRET || '';
const ADMIN_KEYS = (process.env.ADMIN_KEYS || process.env.DUALCONN_ADMIN_KEYS || '')
  .split(',').map((k) => k.trim()).filter(Boolean).map((k) => Buffer.from(k));
const OUTBOX_BYTES = Number(process.env.OUTBOX_BYTES || 1 << 20);
const HEARTBEAT_MS = 15000;
const MAX_BODY = 256 * 1024;
const PLAYER_ID = /^[A-Za-z0-9_.:@-]{1,128}$/;

if (SECRET.length < 32 || ADMIN_KEYS.length === 0) {
  console.error('set JWT_SECRET (>= 32 bytes) and ADMIN_KEYS');
  process.exit(2);
}
const key = Buffer.from(SECRET);

/** HS256 verification with `sub` and `exp`; returns the player id or null. */
function verify(token) {
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  const mac = crypto.createHmac('sha256', key).update(parts[0] + '.' + parts[1]).digest();
  const sig = Buffer.from(parts[2], 'base64url');
  if (sig.length !== mac.length || !crypto.timingSafeEqual(sig, mac)) return null;
  let header, claims;
  try {
    header = JSON.parse(Buffer.from(parts[0], 'base64url'));
    claims = JSON.parse(Buffer.from(parts[1], 'base64url'));
  } catch {
    return null;
  }
  if (header.alg !== 'HS256') return null;
  if (typeof claims.exp !== 'number' || claims.exp <= Date.now() / 1000) return null;
  if (typeof claims.sub !== 'string' || !PLAYER_ID.test(claims.sub)) return null;
  return claims.sub;
}

function isAdmin(req) {
  const auth = req.headers.authorization || '';
  if (!auth.startsWith('Bearer ')) return false;
  const given = Buffer.from(auth.slice(7));
  return ADMIN_KEYS.some((k) => k.length === given.length && crypto.timingSafeEqual(k, given));
}

/** player id -> { seq, conns: Set<conn> }; a conn is { kind, ws | res } */
const players = new Map();
let connCounter = 0;

function player(id) {
  let p = players.get(id);
  if (!p) {
    // Numbers start from the clock in microseconds, as dualconn's do.
    p = { seq: Date.now() * 1000, conns: new Set() };
    players.set(id, p);
  }
  return p;
}

function envelope(eventType, seq, playerId, dataJson) {
  const seqPart = seq === null ? '' : `"sequence_number":${seq},`;
  return `{"event_type":"${eventType}","timestamp":"${new Date().toISOString()}",${seqPart}` +
    `"player_id":${JSON.stringify(playerId)},"data":${dataJson}}`;
}

function send(conn, json, seq) {
  if (conn.kind === 'ws') {
    if (conn.ws.bufferedAmount + json.length > OUTBOX_BYTES) return slow(conn);
    conn.ws.send(json);
  } else {
    if (conn.res.writableLength + json.length > OUTBOX_BYTES) return slow(conn);
    conn.res.write(seq === null ? `data: ${json}\n\n` : `id: ${seq}\ndata: ${json}\n\n`);
  }
}

function slow(conn) {
  if (conn.kind === 'ws') conn.ws.close(4008, 'slow consumer');
  else conn.res.destroy();
}

function join(playerId, conn) {
  const id = `${conn.kind}_${++connCounter}`;
  const p = player(playerId);
  p.conns.add(conn);
  const data = JSON.stringify({
    connection_id: id, connection_type: conn.kind === 'ws' ? 'websocket' : 'sse',
    player_id: playerId, session_id: 'default', heartbeat_interval_ms: HEARTBEAT_MS,
  });
  send(conn, envelope('connected', null, playerId, data), null);
  conn.heartbeat = setInterval(() => send(conn, envelope('heartbeat', null, playerId, '{}'), null), HEARTBEAT_MS);
  return () => {
    clearInterval(conn.heartbeat);
    p.conns.delete(conn);
  };
}

function publishTo(playerId, eventType, dataJson) {
  const p = player(playerId);
  const seq = ++p.seq;
  if (p.conns.size > 0) {
    const json = envelope(eventType, seq, playerId, dataJson); // once per player, shared
    for (const conn of p.conns) send(conn, json, seq);
  }
  return { player_id: playerId, sequence_number: seq, connections: p.conns.size };
}

function reply(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function error(res, status, type, message) {
  reply(res, status, { error: true, error_type: type, message, details: {}, timestamp: new Date().toISOString() });
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (req.method === 'POST' && url.pathname === '/api/publish') {
    if (!isAdmin(req)) return error(res, 401, 'authentication_error', 'admin key required');
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_BODY) req.destroy();
      else chunks.push(c);
    });
    req.on('end', () => {
      let body;
      try {
        body = JSON.parse(Buffer.concat(chunks));
      } catch {
        return error(res, 400, 'validation_error', 'invalid JSON body');
      }
      const dataJson = JSON.stringify(body.data ?? {}); // once per publish
      const type = String(body.event_type || '');
      let events;
      if (body.broadcast === true) {
        events = [];
        for (const [id, p] of players) if (p.conns.size > 0) events.push(publishTo(id, type, dataJson));
      } else if (Array.isArray(body.player_ids) && body.player_ids.length > 0) {
        events = body.player_ids.map((id) => publishTo(String(id), type, dataJson));
      } else {
        return error(res, 400, 'validation_error', 'player_ids or broadcast is required');
      }
      reply(res, 200, { success: true, events, timestamp: new Date().toISOString() });
    });
    return;
  }
  const sse = url.pathname.match(/^\/sse\/([^/]+)$/);
  if (req.method === 'GET' && sse) {
    const auth = req.headers.authorization || '';
    const token = auth.startsWith('Bearer ') ? auth.slice(7) : url.searchParams.get('token') || '';
    const playerId = verify(token);
    if (!playerId || playerId !== decodeURIComponent(sse[1])) {
      return error(res, 401, 'authentication_error', 'invalid token');
    }
    res.writeHead(200, {
      'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-accel-buffering': 'no',
    });
    res.socket.setNoDelay(true);
    res.write('retry: 3000\n\n');
    const leave = join(playerId, { kind: 'sse', res });
    res.on('close', leave);
    return;
  }
  error(res, 404, 'not_found_error', 'no such route');
});

const wss = new WebSocketServer({
  noServer: true,
  perMessageDeflate: false,
  maxPayload: 64 * 1024,
  handleProtocols: (protocols) => (protocols.has('bearer') ? 'bearer' : false),
});

server.on('upgrade', (req, socket, head) => {
  const url = new URL(req.url, 'http://x');
  const protocols = (req.headers['sec-websocket-protocol'] || '').split(',').map((s) => s.trim());
  const playerId = url.pathname === '/api/ws' && protocols[0] === 'bearer' ? verify(protocols[1] || '') : null;
  if (!playerId) {
    socket.end('HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws._socket.setNoDelay(true);
    const leave = join(playerId, { kind: 'ws', ws });
    ws.on('close', leave);
    ws.on('error', () => {});
    ws.on('message', () => {});
  });
});

server.keepAliveTimeout = 60000;
server.listen(PORT, HOST, () => console.error(`node baseline on ${HOST}:${PORT}`));
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
