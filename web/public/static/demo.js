// The demo game page: one GameConnection (WebSocket + SSE at once) playing the built-in demo
// world. It shows each transport's state and health, which transport(s) brought each message and
// how many copies were dropped, and lets you pull either transport's plug.
//
// The client library is the real one, built from client/ by web/build.sh into ./client/.

import { GameConnection } from './client/index.js';

const $ = (id) => document.getElementById(id);
const KINDS = ['websocket', 'sse'];
const LABEL = { websocket: 'WS', sse: 'SSE' };
const DROP_FOR_MS = 3000; // a dropped transport stays down this long, then reconnects by itself
const MAX_LINES = 400;

let conn = null;
let me = '';
let tokenSource = null; // () => Promise<string>
let looked = false; // the first `look` of this visit has been sent
/** sequence_number -> the log line that shows it, to update its transports and duplicates. */
const lines = new Map();

// ---- Tokens -------------------------------------------------------------------------------

/** Dev mode: a token from POST /auth/dev-token, reused until a minute before it expires. */
function devTokens(playerId) {
  let cached = null;
  return async () => {
    if (cached && Date.now() < cached.renewAt) return cached.token;
    const res = await fetch('/auth/dev-token', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ player_id: playerId }),
    });
    if (!res.ok) {
      const err = new Error(`dev-token: HTTP ${res.status}`);
      err.status = res.status;
      throw err;
    }
    const body = await res.json();
    const ttlMs = (body.expires_in ?? 3600) * 1000;
    cached = { token: body.access_token, renewAt: Date.now() + Math.max(ttlMs - 60_000, ttlMs / 2) };
    return cached.token;
  };
}

// ---- Joining ------------------------------------------------------------------------------

async function join(event) {
  event.preventDefault();
  const name = $('name').value.trim();
  const pasted = $('token').value.trim();
  $('join-error').textContent = '';
  if (!/^[A-Za-z0-9_.:@-]{1,32}$/.test(name) || name === 'stats') {
    $('join-error').textContent = 'A name is 1 to 32 letters, digits or _ . : @ -';
    return;
  }
  if (pasted) {
    tokenSource = async () => pasted;
  } else {
    const dev = devTokens(name);
    try {
      await dev();
    } catch (err) {
      if (err.status === 404) {
        $('token-row').hidden = false;
        $('token').focus();
        $('join-error').textContent =
          'This server is not in dev mode: paste a player token for this name.';
      } else {
        $('join-error').textContent = `Could not get a token: ${err.message}`;
      }
      return;
    }
    tokenSource = dev;
  }
  localStorage.setItem('dualconn-demo-name', name);
  start(name);
}

function start(name) {
  me = name;
  lines.clear();
  $('log').replaceChildren();
  $('conn-log').replaceChildren();
  $('me').textContent = name;
  $('join-panel').hidden = true;
  $('game').hidden = false;
  $('banner').hidden = true;
  document.title = `${name} · dualconn demo`;

  conn = new GameConnection({
    playerId: name,
    baseUrl: location.origin,
    getToken: () => tokenSource(),
    onEvent,
    onDuplicate,
    onStateChange: renderStatus,
    onConnectionHealthUpdate: renderStatus,
    onSessionChange,
    onResync: () => {
      system('Events were missed beyond the server\'s history; looking around again.');
      send('look');
    },
    onError: (err, transport) => connLog(transport ?? '-', 'error', String(err?.message ?? err)),
  });
  looked = false;
  conn.connect();
  renderStatus();
  $('command').focus();
}

function leave() {
  conn?.disconnect();
  conn = null;
  $('game').hidden = true;
  $('join-panel').hidden = false;
  document.title = 'dualconn demo';
}

function onSessionChange(sessionId) {
  $('session-id').textContent = sessionId ?? '–';
  if (conn && conn.state === 'stopped') {
    $('banner-text').textContent =
      'A new session was started elsewhere (another tab or device), so this one stopped.';
    $('banner').hidden = false;
  }
  renderStatus();
}

// ---- Events -------------------------------------------------------------------------------

function onEvent(event, meta) {
  if (event.sequence_number === undefined) {
    onLocalEvent(event, meta);
    return;
  }
  const li = renderStreamEvent(event);
  li.dataset.seq = String(event.sequence_number);
  li.dataset.type = event.event_type;
  li.append(viaBadge());
  lines.set(event.sequence_number, li);
  updateVia(li, meta.transports ?? [meta.transport], 0);
  append($('log'), li);
  renderStatus();
}

function onDuplicate(event, meta) {
  const li = lines.get(event.sequence_number);
  if (li) updateVia(li, meta.transports ?? [], meta.duplicatesOfThisEvent ?? 0);
  renderStatus();
}

function onLocalEvent(event, meta) {
  const d = event.data ?? {};
  switch (event.event_type) {
    case 'connected':
      connLog(meta.transport, 'connected', `session ${short(d.session_id)}`);
      // Say where we are as soon as the first transport is up.
      if (!looked) {
        looked = true;
        send('look');
      }
      break;
    case 'recovery':
      connLog(
        meta.transport,
        'recovery',
        d.recovered
          ? `resumed after the last event seen, ${d.replayed} replayed`
          : `gap beyond the server's history, ${d.replayed} replayed: resync`,
      );
      break;
    case 'heartbeat':
    case 'pong':
      break; // shown as "last heartbeat" in the transport's card
    case 'session_terminated':
      connLog(meta.transport, 'session ended', d.reason ?? '');
      break;
    case 'server_shutdown':
      connLog(meta.transport, 'server shutdown', `back in ${d.reconnect_after_ms ?? '?'} ms`);
      break;
    case 'error':
      connLog(meta.transport, 'error', d.message ?? d.error_type ?? '');
      if (d.error_type === 'rate_limit_error') system(`Slow down: ${d.message}`);
      break;
    default:
      connLog(meta.transport, event.event_type, '');
  }
  renderStatus();
}

/** One log line for a stream event of the demo world (or anything a backend published). */
function renderStreamEvent(event) {
  const d = event.data ?? {};
  const li = el('li', 'msg');
  const text = el('span', 'text');
  li.append(text);
  const who = (id) => (id === me ? 'You' : id);
  switch (event.event_type) {
    case 'say':
      li.classList.add('say');
      text.append(strong(who(d.from)), d.from === me ? ' say: ' : ' says: ', quote(d.text));
      break;
    case 'emote':
      li.classList.add('emote');
      text.append('* ', strong(d.from === me ? me : d.from), ` ${d.text}`);
      break;
    case 'whisper':
      li.classList.add('whisper');
      text.append(strong(d.from), ' whispers to you: ', quote(d.text));
      break;
    case 'player_arrived':
      li.classList.add('move');
      text.append(strong(d.player_id), ' arrives.');
      break;
    case 'player_left':
      li.classList.add('move');
      text.append(strong(d.player_id), ` leaves ${d.direction ?? ''}.`);
      break;
    case 'command_response':
      renderResponse(li, text, d);
      break;
    default:
      li.classList.add('other');
      text.append(el('span', 'tag', event.event_type), ` ${JSON.stringify(d)}`);
  }
  return li;
}

function renderResponse(li, text, d) {
  li.classList.add('response');
  if (d.ok === false) {
    li.classList.add('failed');
    text.append(`${d.command}: ${d.error ?? 'failed'}`);
    return;
  }
  if (d.room) {
    li.classList.add('room');
    const others = (d.players ?? []).filter((p) => p !== me);
    text.append(
      el('span', 'room-name', d.room.name),
      el('span', 'room-desc', d.room.description),
      el('span', 'room-meta', `Exits: ${(d.room.exits ?? []).join(', ') || 'none'}. ` +
        (others.length ? `Here: ${others.join(', ')}.` : 'Nobody else is here.')),
    );
    return;
  }
  switch (d.command) {
    case 'say':
    case 'emote':
      li.classList.add('ack');
      text.append(`heard by ${d.heard_by}`);
      break;
    case 'who':
      text.append('Online: ', (d.players ?? []).map((p) => `${p.player_id} (${p.room})`).join(', ') || 'nobody');
      break;
    case 'whisper':
      li.classList.add('ack');
      text.append(`whispered to ${d.to}`);
      break;
    case 'help':
      text.append('Commands: ', (d.commands ?? []).join(' · '));
      break;
    default:
      text.append(JSON.stringify(d));
  }
}

/** The "via" badge: which transports brought the event, first one first, and copies dropped. */
function viaBadge() {
  const via = el('span', 'via');
  via.title = 'Which transport delivered this event first, which brought it again, and how many copies were dropped';
  return via;
}

function updateVia(li, transports, duplicates) {
  const via = li.querySelector('.via');
  via.replaceChildren();
  transports.forEach((t, i) => {
    const chip = el('span', `chip ${t}${i === 0 ? ' first' : ''}`, LABEL[t] ?? t);
    via.append(chip);
  });
  if (duplicates > 0) via.append(el('span', 'dups', `${duplicates} dup dropped`));
  via.dataset.transports = transports.join(',');
  via.dataset.duplicates = String(duplicates);
}

function system(message) {
  append($('log'), el('li', 'msg system', message));
}

function connLog(transport, what, detail) {
  const li = el('li', `c ${transport}`);
  li.append(el('span', 'time', clock()), el('span', `chip ${transport}`, LABEL[transport] ?? transport),
    el('strong', '', what), detail ? ` ${detail}` : '');
  const list = $('conn-log');
  list.prepend(li);
  while (list.children.length > 60) list.lastElementChild.remove();
}

function append(list, li) {
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.append(li);
  while (list.children.length > MAX_LINES) {
    const old = list.firstElementChild;
    if (old.dataset.seq) lines.delete(Number(old.dataset.seq));
    old.remove();
  }
  if (atBottom) list.scrollTop = list.scrollHeight;
}

// ---- Commands -----------------------------------------------------------------------------

async function send(command) {
  if (!conn) return;
  try {
    const result = await conn.sendCommand('command', { command });
    const how = result.transport === 'websocket' ? 'over the WebSocket' : `over HTTP (${result.status})`;
    $('last-send').textContent = `“${command}” sent ${how}`;
    $('last-send').dataset.transport = result.transport;
  } catch (err) {
    $('last-send').textContent = `“${command}” failed: ${err.message}`;
    $('last-send').dataset.transport = 'failed';
  }
}

function onCommand(event) {
  event.preventDefault();
  const input = $('command');
  const text = input.value.trim();
  if (!text) return;
  input.value = '';
  send(text);
}

// ---- Status -------------------------------------------------------------------------------

function renderStatus() {
  if (!conn) return;
  const state = conn.state;
  const health = conn.connectionHealth;
  const states = conn.transportStates;
  const stats = conn.stats;
  setState($('conn-state'), 'state', state);
  setState($('overall-health'), 'health', health.overall);
  $('session-id').textContent = conn.sessionId ?? '–';
  $('session-id').title = conn.sessionId ?? '';
  for (const kind of KINDS) {
    const card = $(`transport-${kind}`);
    setState(card.querySelector('.state'), 'state', states[kind]);
    setState(card.querySelector('.health'), 'health', health[kind].status);
    const at = health[kind].lastHeartbeatAt;
    card.querySelector('.beat').textContent = at ? `${Math.max(0, Math.round((Date.now() - at) / 1000))} s ago` : '–';
    card.querySelector('.first').textContent = String(stats.firstBy[kind]);
    card.querySelector('.drop').disabled = states[kind] !== 'open';
    card.dataset.state = states[kind];
  }
  $('delivered').textContent = String(stats.delivered);
  $('duplicates').textContent = String(stats.duplicatesDropped);
  $('local').textContent = String(stats.localEvents);
}

function setState(node, attr, value) {
  if (node.dataset[attr] !== value) {
    node.dataset[attr] = value;
    node.textContent = value;
  }
}

function drop(kind) {
  if (conn?.dropTransport(kind, { downForMs: DROP_FOR_MS })) {
    connLog(kind, 'dropped', `by you; reconnects in ~${DROP_FOR_MS / 1000} s and resumes`);
    renderStatus();
  }
}

// ---- Small DOM helpers ----------------------------------------------------------------------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function strong(text) {
  return el('strong', '', text);
}

function quote(text) {
  return el('q', '', text);
}

function short(id) {
  return typeof id === 'string' && id.length > 10 ? `${id.slice(0, 8)}…` : String(id ?? '');
}

function clock() {
  return new Date().toLocaleTimeString([], { hour12: false });
}

// ---- Wiring ---------------------------------------------------------------------------------

$('join-form').addEventListener('submit', join);
$('command-form').addEventListener('submit', onCommand);
$('leave').addEventListener('click', leave);
$('rejoin').addEventListener('click', () => {
  $('banner').hidden = true;
  conn?.connect();
});
for (const button of document.querySelectorAll('button.drop')) {
  button.addEventListener('click', () => drop(button.dataset.kind));
}
for (const button of document.querySelectorAll('button.cmd')) {
  button.addEventListener('click', () => send(button.dataset.command));
}
// Heartbeat ages and transport phases change without an event; keep them current.
setInterval(renderStatus, 500);
window.addEventListener('pagehide', () => conn?.disconnect());

const remembered = localStorage.getItem('dualconn-demo-name');
if (remembered) $('name').value = remembered;
$('name').focus();
