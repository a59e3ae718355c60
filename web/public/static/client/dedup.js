export const DEFAULT_DEDUP_WINDOW = 1024;
/**
 * The seen-set of one player's stream.
 *
 * Both transports carry the same stream, each in order, but not in step and not from the same
 * starting point: a WebSocket that connected later may deliver 60 before an SSE stream delivers
 * 58 and 59, or a reconnecting transport may replay from an older cursor. An event is new iff
 * neither transport has brought it yet. A high-water mark alone would drop 58 and 59 above although
 * the app never saw them. So we keep the exact set of the last `capacity` numbers, and a low-water
 * mark (the last number evicted) below which everything counts as seen: a transport would have to
 * lag more than `capacity` events behind the other for that to be wrong, and reconnects always
 * resume from the highest delivered number, so it does not.
 */
export class StreamWindow {
    constructor(capacity = DEFAULT_DEDUP_WINDOW) {
        this.capacity = capacity;
        /** Sorted ascending; almost always appended to, since each transport delivers in order. */
        this.seqs = [];
        this.records = new Map();
        this.lowWater = -Infinity;
        if (!(capacity >= 1))
            throw new RangeError('dedup window must hold at least one event');
    }
    accept(seq, transport) {
        if (seq <= this.lowWater)
            return { fresh: false, record: undefined };
        const seen = this.records.get(seq);
        if (seen) {
            seen.duplicates += 1;
            if (!seen.transports.includes(transport))
                seen.transports.push(transport);
            return { fresh: false, record: seen };
        }
        const record = { transports: [transport], duplicates: 0 };
        this.insert(seq);
        this.records.set(seq, record);
        if (this.max === undefined || seq > this.max)
            this.max = seq;
        while (this.seqs.length > this.capacity) {
            const evicted = this.seqs.shift();
            this.records.delete(evicted);
            this.lowWater = evicted;
        }
        return { fresh: true, record };
    }
    /** Treats everything up to `seq` as already delivered, e.g. in an earlier page life. */
    seed(seq) {
        if (seq > this.lowWater)
            this.lowWater = seq;
        if (this.max === undefined || seq > this.max)
            this.max = seq;
    }
    /** The highest sequence number delivered: the resume cursor. */
    get highest() {
        return this.max;
    }
    record(seq) {
        return this.records.get(seq);
    }
    get size() {
        return this.seqs.length;
    }
    insert(seq) {
        const a = this.seqs;
        if (a.length === 0 || seq > a[a.length - 1]) {
            a.push(seq);
            return;
        }
        let lo = 0;
        let hi = a.length;
        while (lo < hi) {
            const mid = (lo + hi) >>> 1;
            if (a[mid] < seq)
                lo = mid + 1;
            else
                hi = mid;
        }
        a.splice(lo, 0, seq);
    }
}
/** Dedup keyed on `(player_id, sequence_number)`, one window per player id seen. */
export class Deduplicator {
    constructor(capacity = DEFAULT_DEDUP_WINDOW) {
        this.capacity = capacity;
        this.windows = new Map();
    }
    accept(playerId, seq, transport) {
        return this.window(playerId).accept(seq, transport);
    }
    window(playerId) {
        let w = this.windows.get(playerId);
        if (!w) {
            w = new StreamWindow(this.capacity);
            this.windows.set(playerId, w);
        }
        return w;
    }
    seed(playerId, seq) {
        this.window(playerId).seed(seq);
    }
    highest(playerId) {
        return this.windows.get(playerId)?.highest;
    }
    record(playerId, seq) {
        return this.windows.get(playerId)?.record(seq);
    }
}
