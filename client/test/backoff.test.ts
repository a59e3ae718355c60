import { describe, expect, it } from 'vitest';

import { backoffDelay } from '../src/backoff.js';

const bound = (n: number) => Math.min(20_000, 500 * 2 ** n);

describe('backoffDelay', () => {
  it('grows from 0.5 s and is capped at 20 s', () => {
    const top = (n: number) => backoffDelay(n, () => 1);
    expect([0, 1, 2, 3, 4, 5, 6, 7].map(top)).toEqual([500, 1000, 2000, 4000, 8000, 16000, 20000, 20000]);
    expect(top(1000)).toBe(20_000);
    expect(backoffDelay(0, () => 0)).toBe(0);
  });

  it('is full jitter: spread over [0, min(cap, base * 2^n)]', () => {
    for (let n = 0; n < 12; n++) {
      const samples = Array.from({ length: 200 }, () => backoffDelay(n));
      for (const d of samples) {
        expect(d).toBeGreaterThanOrEqual(0);
        expect(d).toBeLessThanOrEqual(bound(n));
      }
      // Full jitter reaches well below half the bound, and not all samples are equal.
      expect(Math.min(...samples)).toBeLessThan(bound(n) / 2);
      expect(new Set(samples).size).toBeGreaterThan(10);
    }
  });

  it('scales linearly with the random draw', () => {
    expect(backoffDelay(3, () => 0.25)).toBe(1000);
    expect(backoffDelay(3, () => 0.5, { baseMs: 100, capMs: 300 })).toBe(150);
  });
});
