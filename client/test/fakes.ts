// Stand-ins for the browser's WebSocket and EventSource, driven by the test as if it were the server.
import type { DualconnEvent } from '../src/types.js';

export class FakeWebSocket {
  static instances: FakeWebSocket[] = [];
  readyState = 0;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  sent: string[] = [];
  closedByClient = false;

  constructor(
    readonly url: string,
    readonly protocols?: string | string[],
  ) {
    FakeWebSocket.instances.push(this);
  }

  send(data: string): void {
    if (this.readyState !== 1) throw new Error('not open');
    this.sent.push(data);
  }

  close(): void {
    this.closedByClient = true;
    this.readyState = 3;
  }

  // ---- server side ----
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }

  emit(event: Partial<DualconnEvent> & { event_type: string }): void {
    this.onmessage?.({ data: JSON.stringify({ player_id: 'p1', timestamp: 't', data: {}, ...event }) });
  }

  drop(code = 1006, reason = ''): void {
    this.readyState = 3;
    this.onerror?.({});
    this.onclose?.({ code, reason });
  }
}

export class FakeEventSource {
  static instances: FakeEventSource[] = [];
  readyState = 0;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  closedByClient = false;

  constructor(readonly url: string) {
    FakeEventSource.instances.push(this);
  }

  close(): void {
    this.closedByClient = true;
    this.readyState = 2;
  }

  // ---- server side ----
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }

  emit(event: Partial<DualconnEvent> & { event_type: string }): void {
    this.onmessage?.({ data: JSON.stringify({ player_id: 'p1', timestamp: 't', data: {}, ...event }) });
  }

  /** The stream ended or failed; a real EventSource would now try to reconnect by itself. */
  drop(): void {
    this.readyState = 0;
    this.onerror?.({});
  }
}

export function lastWs(): FakeWebSocket {
  const ws = FakeWebSocket.instances[FakeWebSocket.instances.length - 1];
  if (!ws) throw new Error('no WebSocket was opened');
  return ws;
}

export function lastEs(): FakeEventSource {
  const es = FakeEventSource.instances[FakeEventSource.instances.length - 1];
  if (!es) throw new Error('no EventSource was opened');
  return es;
}

export function resetFakes(): void {
  FakeWebSocket.instances = [];
  FakeEventSource.instances = [];
}

export function connectedEvent(type: 'websocket' | 'sse', extra: Record<string, unknown> = {}) {
  return {
    event_type: 'connected',
    data: {
      connection_id: `${type}-1`,
      connection_type: type,
      player_id: 'p1',
      session_id: 's1',
      heartbeat_interval_ms: 15_000,
      ...extra,
    },
  };
}

export function streamEvent(seq: number, data: Record<string, unknown> = {}) {
  return { event_type: 'chat', sequence_number: seq, data };
}

export interface FetchCall {
  url: string;
  method: string;
  headers: Record<string, string>;
  body?: string;
}

/** A fetch that records calls and answers with the queued responses in order. */
export function fakeFetch(...responses: Array<{ status: number; body: unknown }>) {
  const calls: FetchCall[] = [];
  const fn = async (
    url: string,
    init: { method: string; headers: Record<string, string>; body?: string },
  ) => {
    calls.push({ url, ...init });
    const r = responses.shift() ?? { status: 500, body: { error: true, error_type: 'system_error', message: 'no response queued', details: {}, timestamp: 't' } };
    return {
      ok: r.status >= 200 && r.status < 300,
      status: r.status,
      text: async () => (typeof r.body === 'string' ? r.body : JSON.stringify(r.body)),
    };
  };
  return { fn, calls };
}
