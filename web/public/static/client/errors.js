/**
 * An HTTP error from the server, carrying its error envelope
 * (`{"error": true, "error_type", "message", "details", "timestamp"}`), or a failure to reach it.
 */
export class DualconnError extends Error {
    constructor(init) {
        super(init.message);
        this.name = 'DualconnError';
        this.errorType = init.errorType;
        this.status = init.status;
        this.details = init.details ?? {};
        this.timestamp = init.timestamp ?? null;
        this.body = init.body;
        if (init.cause !== undefined)
            this.cause = init.cause;
    }
    /** Builds the error from a non-2xx answer, trusting the envelope only when it looks like one. */
    static fromResponse(status, bodyText) {
        let body = bodyText;
        try {
            body = bodyText ? JSON.parse(bodyText) : undefined;
        }
        catch {
            // Proxies answer with HTML; keep the text for debugging.
        }
        if (isEnvelope(body)) {
            return new DualconnError({
                errorType: body.error_type,
                message: typeof body.message === 'string' ? body.message : `HTTP ${status}`,
                status,
                details: isObject(body.details) ? body.details : {},
                timestamp: typeof body.timestamp === 'string' ? body.timestamp : null,
                body,
            });
        }
        return new DualconnError({ errorType: 'http_error', message: `HTTP ${status}`, status, body });
    }
}
function isObject(v) {
    return typeof v === 'object' && v !== null && !Array.isArray(v);
}
function isEnvelope(v) {
    return isObject(v) && v.error === true && typeof v.error_type === 'string';
}
