/**
 * An HTTP error from the server, carrying its error envelope
 * (`{"error": true, "error_type", "message", "details", "timestamp"}`), or a failure to reach it.
 */
export class DualconnError extends Error {
  /** The server's `error_type`, or `network_error` / `http_error` when there was no envelope. */
  readonly errorType: string;
  /** HTTP status; 0 when the request never got an answer. */
  readonly status: number;
  readonly details: Record<string, unknown>;
  readonly timestamp: string | null;
  /** The parsed body (or raw text), for anything the envelope does not cover. */
  readonly body: unknown;

  constructor(init: {
    errorType: string;
    message: string;
    status: number;
    details?: Record<string, unknown>;
    timestamp?: string | null;
    body?: unknown;
    cause?: unknown;
  }) {
    super(init.message);
    this.name = 'DualconnError';
    this.errorType = init.errorType;
    this.status = init.status;
    this.details = init.details ?? {};
    this.timestamp = init.timestamp ?? null;
    this.body = init.body;
    if (init.cause !== undefined) (this as { cause?: unknown }).cause = init.cause;
  }

  /** Builds the error from a non-2xx answer, trusting the envelope only when it looks like one. */
  static fromResponse(status: number, bodyText: string): DualconnError {
    let body: unknown = bodyText;
    try {
      body = bodyText ? JSON.parse(bodyText) : undefined;
    } catch {
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

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isEnvelope(v: unknown): v is Record<string, unknown> & { error_type: string } {
  return isObject(v) && v.error === true && typeof v.error_type === 'string';
}
