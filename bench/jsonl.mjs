// What bench/run.sh's summaries share: its JSON lines, and the median they quote.
import { readFileSync } from 'node:fs';

/** Every JSON line of a bench/run.sh results file. */
export const readRows = (path) =>
  readFileSync(path, 'utf8')
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));

/** The median of the finite values, NaN when there are none. */
export const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
