import { describe, expect, it } from 'vitest';

import { Deduplicator, StreamWindow } from '../src/dedup.js';
import type { TransportKind } from '../src/types.js';

function deliver(w: StreamWindow, arrivals: Array<[TransportKind, number]>): number[] {
  const out: number[] = [];
  for (const [t, seq] of arrivals) if (w.accept(seq, t).fresh) out.push(seq);
  return out;
}

describe('StreamWindow', () => {
  it('delivers each number once when both transports interleave the same stream', () => {
    const w = new StreamWindow();
    const out = deliver(w, [
      ['websocket', 1], ['sse', 1], ['websocket', 2], ['websocket', 3],
      ['sse', 2], ['sse', 3], ['sse', 4], ['websocket', 4], ['websocket', 5], ['sse', 5],
    ]);
    expect(out).toEqual([1, 2, 3, 4, 5]);
  });

  it('delivers events the slower transport brings below the faster one\'s highest number', () => {
    // WebSocket joined live at 60; SSE had connected earlier and still carries 58 and 59.
    const w = new StreamWindow();
    const out = deliver(w, [
      ['websocket', 60], ['websocket', 61], ['sse', 58], ['sse', 59], ['sse', 60], ['sse', 61], ['sse', 62], ['websocket', 62],
    ]);
    expect(out).toEqual([60, 61, 58, 59, 62]);
    expect(w.highest).toBe(62);
  });

  it('handles arbitrary out-of-order duplicates within the window', () => {
    const w = new StreamWindow(16);
    const out = deliver(w, [
      ['sse', 5], ['websocket', 3], ['sse', 3], ['websocket', 5], ['websocket', 4], ['sse', 1], ['sse', 4], ['websocket', 1], ['websocket', 2],
    ]);
    expect(out).toEqual([5, 3, 4, 1, 2]);
  });

  it('remembers which transports brought an event and how many copies were dropped', () => {
    const w = new StreamWindow();
    expect(w.accept(7, 'sse')).toEqual({ fresh: true, record: { transports: ['sse'], duplicates: 0 } });
    expect(w.accept(7, 'websocket')).toEqual({ fresh: false, record: { transports: ['sse', 'websocket'], duplicates: 1 } });
    expect(w.accept(7, 'websocket')).toEqual({ fresh: false, record: { transports: ['sse', 'websocket'], duplicates: 2 } });
  });

  it('treats numbers below the low-water mark as seen once they leave the window', () => {
    const w = new StreamWindow(4);
    expect(deliver(w, [['websocket', 1], ['websocket', 2], ['websocket', 3], ['websocket', 4], ['websocket', 5], ['websocket', 6]]))
      .toEqual([1, 2, 3, 4, 5, 6]);
    expect(w.size).toBe(4);
    // 1 and 2 were evicted: known only through the low-water mark, with no record.
    expect(w.accept(1, 'sse')).toEqual({ fresh: false, record: undefined });
    expect(w.accept(2, 'sse')).toEqual({ fresh: false, record: undefined });
    expect(w.accept(3, 'sse').fresh).toBe(false);
    expect(w.accept(6, 'sse').fresh).toBe(false);
    expect(w.accept(7, 'sse').fresh).toBe(true);
  });

  it('stays bounded under a long stream', () => {
    const w = new StreamWindow(1024);
    for (let i = 1; i <= 10_000; i++) {
      expect(w.accept(i, 'websocket').fresh).toBe(true);
      expect(w.accept(i, 'sse').fresh).toBe(false);
    }
    expect(w.size).toBe(1024);
    expect(w.accept(10_000 - 1023, 'sse').record).toBeDefined();
    expect(w.accept(10_000 - 1024, 'sse').record).toBeUndefined();
  });

  it('seed marks an earlier prefix as delivered', () => {
    const w = new StreamWindow();
    w.seed(100);
    expect(w.accept(99, 'sse').fresh).toBe(false);
    expect(w.accept(100, 'sse').fresh).toBe(false);
    expect(w.accept(101, 'sse').fresh).toBe(true);
  });
});

describe('Deduplicator', () => {
  it('keys on (player_id, sequence_number)', () => {
    const d = new Deduplicator();
    expect(d.accept('alice', 1, 'websocket').fresh).toBe(true);
    expect(d.accept('bob', 1, 'websocket').fresh).toBe(true);
    expect(d.accept('alice', 1, 'sse').fresh).toBe(false);
    expect(d.highest('alice')).toBe(1);
    expect(d.highest('carol')).toBeUndefined();
  });
});
