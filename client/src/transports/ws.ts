import type { WebSocketConstructor, WebSocketLike } from '../types.js';
import type { CloseInfo, TransportCallbacks, TransportHandle } from './types.js';

const OPEN = 1;

/**
 * Opens a WebSocket authenticated by subprotocol (`bearer, <jwt>`), the one way a browser can
 * present a token on the handshake without putting it in the URL.
 */
export function openWebSocket(
  Ctor: WebSocketConstructor,
  url: string,
  token: string,
  cb: TransportCallbacks,
): TransportHandle {
  const socket: WebSocketLike = new Ctor(url, ['bearer', token]);
  let done = false;
  const finish = (info: CloseInfo) => {
    if (done) return;
    done = true;
    detach(socket);
    cb.onClose(info);
  };

  socket.onopen = () => {
    if (!done) cb.onOpen();
  };
  socket.onmessage = (ev) => {
    if (!done) cb.onMessage(frameText(ev.data));
  };
  // Browsers always follow `error` with `close`, which carries the code we need; waiting for it
  // also keeps us from reporting one failure twice.
  socket.onerror = () => {};
  socket.onclose = (ev) => finish({ code: ev.code, reason: ev.reason });

  return {
    kind: 'websocket',
    canSend: () => !done && socket.readyState === OPEN,
    send: (text) => socket.send(text),
    close: () => {
      if (done) return;
      done = true;
      detach(socket);
      // Node's `ws` emits an error when a socket still CONNECTING is closed, and an error with no
      // listener is thrown; the socket is being abandoned, so that error means nothing.
      socket.onerror = () => {};
      try {
        socket.close(1000, 'client closing');
      } catch {
        // Closing a socket that is still CONNECTING throws in some implementations; it is being
        // abandoned either way.
      }
    },
  };
}

function detach(socket: WebSocketLike): void {
  socket.onopen = null;
  socket.onmessage = null;
  socket.onerror = null;
  socket.onclose = null;
}

function frameText(data: unknown): string {
  if (typeof data === 'string') return data;
  if (data instanceof ArrayBuffer) return new TextDecoder().decode(data);
  if (ArrayBuffer.isView(data)) return new TextDecoder().decode(data);
  return String(data);
}
