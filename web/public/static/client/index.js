export { GameConnection } from './GameConnection.js';
export { DualconnError } from './errors.js';
export { backoffDelay, DEFAULT_BACKOFF } from './backoff.js';
export { Deduplicator, StreamWindow, DEFAULT_DEDUP_WINDOW } from './dedup.js';
export { CONNECTION_LOCAL_EVENTS } from './types.js';
