import type { TransportKind } from './types.js';

export interface DeliveryRecord {
  /** Transports that brought the event, in arrival order. */
  transports: TransportKind[];
  /** Copies dropped after the first. */
  duplicates: number;
}

export type AcceptResult =
  | { fresh: true; record: DeliveryRecord }
  /** `record` is undefined when the event is older than the window (below the low-water mark). */
  | { fresh: false; record: DeliveryRecord | undefined };

export const DEFAULT_DEDUP_WINDOW = 1024;

/**
 * The seen-set of one player's stream.
 *
 * Both transports carry the same stream, each in order, but not in step: WebSocket may be at 120
 * while SSE replays 95. So "new" means "not yet seen on either", which a high-water mark cannot
 * answer (it would drop 96..120 from SSE even if WebSocket had skipped none of them... and it would
 * drop events the faster transport has not delivered yet after a reconnect). We keep the exact set
 * of the last `capacity` sequence numbers, plus a low-water mark: everything at or below it counts
 * as seen. That is sound because every connection resumes from the highest delivered number and
 * delivers gap-free from there, so what was delivered is always a contiguous prefix of the stream.
 */
export class StreamWindow {
  /** Sorted ascending; almost always appended to, since each transport delivers in order. */
  private readonly seqs: number[] = [];
  private readonly records = new Map<number, DeliveryRecord>();
  private lowWater = -Infinity;
  private max: number | undefined;

  constructor(private readonly capacity: number = DEFAULT_DEDUP_WINDOW) {
    if (!(capacity >= 1)) throw new RangeError('dedup window must hold at least one event');
  }

  accept(seq: number, transport: TransportKind): AcceptResult {
    if (seq <= this.lowWater) return { fresh: false, record: undefined };
    const seen = this.records.get(seq);
    if (seen) {
      seen.duplicates += 1;
      if (!seen.transports.includes(transport)) seen.transports.push(transport);
      return { fresh: false, record: seen };
    }
    const record: DeliveryRecord = { transports: [transport], duplicates: 0 };
    this.insert(seq);
    this.records.set(seq, record);
    if (this.max === undefined || seq > this.max) this.max = seq;
    while (this.seqs.length > this.capacity) {
      const evicted = this.seqs.shift() as number;
      this.records.delete(evicted);
      this.lowWater = evicted;
    }
    return { fresh: true, record };
  }

  /** The highest sequence number delivered: the resume cursor. */
  get highest(): number | undefined {
    return this.max;
  }

  record(seq: number): DeliveryRecord | undefined {
    return this.records.get(seq);
  }

  get size(): number {
    return this.seqs.length;
  }

  private insert(seq: number): void {
    const a = this.seqs;
    if (a.length === 0 || seq > (a[a.length - 1] as number)) {
      a.push(seq);
      return;
    }
    let lo = 0;
    let hi = a.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((a[mid] as number) < seq) lo = mid + 1;
      else hi = mid;
    }
    a.splice(lo, 0, seq);
  }
}

/** Dedup keyed on `(player_id, sequence_number)`, one window per player id seen. */
export class Deduplicator {
  private readonly windows = new Map<string, StreamWindow>();

  constructor(private readonly capacity: number = DEFAULT_DEDUP_WINDOW) {}

  accept(playerId: string, seq: number, transport: TransportKind): AcceptResult {
    let w = this.windows.get(playerId);
    if (!w) {
      w = new StreamWindow(this.capacity);
      this.windows.set(playerId, w);
    }
    return w.accept(seq, transport);
  }

  highest(playerId: string): number | undefined {
    return this.windows.get(playerId)?.highest;
  }

  record(playerId: string, seq: number): DeliveryRecord | undefined {
    return this.windows.get(playerId)?.record(seq);
  }
}
