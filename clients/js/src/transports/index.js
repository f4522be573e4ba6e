/** The transports by name, and what the connection expects of each (docs/protocol.md). */

/**
 * @typedef {Object} TransportCallbacks
 * @property {() => void} onopen the connection is up; the client sends `hello` next
 * @property {(envelope: Object, bytes: Uint8Array|null) => void} onenvelope an envelope
 *   arrived; `bytes` is its binary data when it came as raw bytes
 * @property {(code: number, reason: string, wasClean: boolean, retryAfter?: number) => void}
 *   onclose the connection ended (1006 when it dropped or could not be opened; 4029 with
 *   `retryAfter`, seconds, when an HTTP answer said to back off: 429, 503 + Retry-After)
 * @property {() => void} [onrecycle] the server ended the downstream to have it reopened at
 *   once (iframe): the client sends `hello` again on the same transport
 */

/**
 * @typedef {Object} Transport
 * @property {string} name
 * @property {number} bufferedAmount bytes handed over but not yet on the wire
 * @property {() => void} open
 * @property {(envelope: Object, bytes: Uint8Array|null) => void} send one envelope; binary
 *   data in `bytes` (the envelope then has no `data`)
 * @property {(code: number, reason: string) => void} close a clean close; onclose follows
 * @property {() => void} abort drop the connection at once; no callback follows
 */

export { WebSocketTransport } from './websocket.js';
export { SseTransport } from './sse.js';
export { StreamTransport } from './stream.js';
export { IframeTransport } from './iframe.js';
export { LongpollTransport } from './longpoll.js';
export { PollingTransport } from './polling.js';
