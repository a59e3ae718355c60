export const DEFAULT_BACKOFF = { baseMs: 500, capMs: 20000 };
/**
 * Full-jitter exponential backoff: a uniform delay in [0, min(cap, base * 2^attempt)].
 * Full jitter (rather than "base plus a little") is what spreads a herd of clients that a
 * restarting server dropped at the same instant.
 */
export function backoffDelay(attempt, random = Math.random, opts = {}) {
    const base = opts.baseMs ?? DEFAULT_BACKOFF.baseMs;
    const cap = opts.capMs ?? DEFAULT_BACKOFF.capMs;
    // Clamp the exponent so 2^attempt never overflows into Infinity * 0 = NaN territory.
    const bound = Math.min(cap, base * 2 ** Math.min(Math.max(attempt, 0), 52));
    const r = Math.min(Math.max(random(), 0), 1);
    return Math.floor(r * bound);
}
