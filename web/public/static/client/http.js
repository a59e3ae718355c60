import { DualconnError } from './errors.js';
/**
 * `http(s)://host[:port][/prefix]` without the trailing slash. A path-only base ('' or '/game')
 * means the page's own origin, which only exists in a browser.
 */
export function resolveHttpBase(baseUrl) {
    let base = baseUrl;
    if (!/^https?:\/\//i.test(base)) {
        const origin = globalThis.location?.origin;
        if (!origin || /^[a-z][a-z0-9+.-]*:/i.test(base)) {
            throw new TypeError(`baseUrl must be an http(s) URL, got ${JSON.stringify(baseUrl)}`);
        }
        base = origin + (base.startsWith('/') || base === '' ? base : `/${base}`);
    }
    return base.replace(/\/+$/, '');
}
/** Appends the parameters that have a value; an empty `session_id=` would mean "none" anyway. */
export function withQuery(url, params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params))
        if (v !== null && v !== '')
            q.set(k, String(v));
    const s = q.toString();
    return s ? `${url}?${s}` : url;
}
/**
 * One JSON request with the player's bearer token. Every failure becomes a DualconnError, so
 * callers handle one error type whether the server, a proxy or the network said no.
 */
export async function httpRequest(fetchFn, url, req) {
    if (!fetchFn)
        throw new TypeError('no fetch available: pass `fetch` in the options');
    const headers = {
        Authorization: `Bearer ${await req.token()}`,
        Accept: 'application/json',
    };
    const init = {
        method: req.method,
        headers,
    };
    if (req.body !== undefined) {
        headers['Content-Type'] = 'application/json';
        init.body = JSON.stringify(req.body);
    }
    const what = `${req.method} ${url}`;
    let res;
    try {
        // A browser's fetch throws "Illegal invocation" unless called on the global object.
        res = await fetchFn.call(globalThis, url, init);
    }
    catch (cause) {
        throw new DualconnError({
            errorType: 'network_error',
            message: `${what} failed: ${String(cause?.message ?? cause)}`,
            status: 0,
            cause,
        });
    }
    const text = await res.text();
    if (!res.ok)
        throw DualconnError.fromResponse(res.status, text);
    if (!text)
        return { status: res.status, body: undefined };
    try {
        return { status: res.status, body: JSON.parse(text) };
    }
    catch (cause) {
        throw new DualconnError({
            errorType: 'http_error',
            message: `${what}: response is not JSON`,
            status: res.status,
            body: text,
            cause,
        });
    }
}
