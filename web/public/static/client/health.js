/**
 * Healthy means a heartbeat (or pong) within 2 intervals, the same rule the server applies to its
 * side of the connection. Overall is judged over the enabled transports only, so an SSE-only
 * client with a healthy stream is `healthy`, not `degraded`.
 */
export function summarizeHealth(inputs, now) {
    const of = (kind) => {
        const t = inputs.find((s) => s.kind === kind);
        if (!t)
            return { status: 'disconnected', lastHeartbeatAt: null };
        if (!t.up)
            return { status: 'disconnected', lastHeartbeatAt: t.lastHeartbeatAt };
        const silent = t.lastHeartbeatAt === null ? Infinity : now - t.lastHeartbeatAt;
        return {
            status: silent > 2 * t.heartbeatIntervalMs ? 'unhealthy' : 'healthy',
            lastHeartbeatAt: t.lastHeartbeatAt,
        };
    };
    const websocket = of('websocket');
    const sse = of('sse');
    const enabled = inputs.map((t) => (t.kind === 'websocket' ? websocket : sse));
    const healthy = enabled.filter((h) => h.status === 'healthy').length;
    const up = enabled.filter((h) => h.status !== 'disconnected').length;
    const overall = up === 0
        ? 'no_connections'
        : healthy === enabled.length
            ? 'healthy'
            : healthy > 0
                ? 'degraded'
                : 'unhealthy';
    return { websocket, sse, overall };
}
export function sameHealth(a, b) {
    return (a.overall === b.overall &&
        a.websocket.status === b.websocket.status &&
        a.websocket.lastHeartbeatAt === b.websocket.lastHeartbeatAt &&
        a.sse.status === b.sse.status &&
        a.sse.lastHeartbeatAt === b.sse.lastHeartbeatAt);
}
