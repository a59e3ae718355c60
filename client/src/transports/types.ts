import type { TransportKind } from '../types.js';

/** How a transport ended. `code` is the WebSocket close code; SSE has none. */
export interface CloseInfo {
  code?: number;
  reason?: string;
}

/** What GameConnection hears from a transport. `onClose` fires at most once per handle. */
export interface TransportCallbacks {
  onOpen(): void;
  onMessage(text: string): void;
  onClose(info: CloseInfo): void;
}

/** One open (or opening) connection. Framing only: no session, cursor or dedup rules here. */
export interface TransportHandle {
  readonly kind: TransportKind;
  /** True when a frame can be written now. SSE is receive-only, so always false there. */
  canSend(): boolean;
  send(text: string): void;
  /** Closes without reporting `onClose`: the caller already knows why. */
  close(): void;
}
