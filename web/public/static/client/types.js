// Public types. Transport and fetch types are structural so that Node users need neither the DOM
// lib nor a polyfill's own typings: anything shaped like the browser's classes works.
/** Events the server sends to a single connection. They are never deduplicated. */
export const CONNECTION_LOCAL_EVENTS = [
    'connected',
    'heartbeat',
    'pong',
    'error',
    'recovery',
    'session_terminated',
    'server_shutdown',
    'connection_replaced',
    'token_expired',
];
