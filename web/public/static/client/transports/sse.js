/**
 * Opens an EventSource and turns its self-healing off: on the first error the stream is closed
 * and reported as ended. EventSource's own reconnect would reuse the URL, so a stale token and an
 * old `last_event_id` in the query; GameConnection reconnects instead, with a fresh token, the
 * current cursor and its own backoff.
 */
export function openEventSource(Ctor, url, cb) {
    const source = new Ctor(url);
    let done = false;
    const stop = () => {
        done = true;
        source.onopen = null;
        source.onmessage = null;
        source.onerror = null;
        source.close();
    };
    source.onopen = () => {
        if (!done)
            cb.onOpen();
    };
    source.onmessage = (ev) => {
        if (!done)
            cb.onMessage(ev.data);
    };
    source.onerror = () => {
        if (done)
            return;
        stop();
        // SSE has no close codes; why a stream ended is told by the last event before it.
        cb.onClose({});
    };
    return {
        kind: 'sse',
        canSend: () => false,
        send: () => {
            throw new Error('SSE is receive-only');
        },
        close: () => {
            if (!done)
                stop();
        },
    };
}
