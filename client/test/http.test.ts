import { afterEach, describe, expect, it } from 'vitest';

import { resolveHttpBase, withQuery } from '../src/http.js';

const g = globalThis as { location?: { origin: string } };

afterEach(() => {
  delete g.location;
});

describe('resolveHttpBase', () => {
  it('keeps an absolute base and drops trailing slashes', () => {
    expect(resolveHttpBase('https://h.test:8443/x//')).toBe('https://h.test:8443/x');
  });

  it('resolves a path-only base against the page origin', () => {
    g.location = { origin: 'https://play.test' };
    expect(resolveHttpBase('')).toBe('https://play.test');
    expect(resolveHttpBase('/game/')).toBe('https://play.test/game');
  });

  it('refuses a path-only base outside a page, and other schemes', () => {
    expect(() => resolveHttpBase('/game')).toThrow(TypeError);
    g.location = { origin: 'https://play.test' };
    expect(() => resolveHttpBase('ws://h.test')).toThrow(TypeError);
  });
});

describe('withQuery', () => {
  it('encodes values and leaves out empty ones', () => {
    expect(withQuery('/sse/p', { token: 'a.b+c', session_id: null, last_event_id: 0 })).toBe(
      '/sse/p?token=a.b%2Bc&last_event_id=0',
    );
    expect(withQuery('/api/ws', { session_id: '' })).toBe('/api/ws');
  });
});
