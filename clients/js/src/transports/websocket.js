import { NEWLINE, SUBPROTOCOL } from '../constants.js';
import { decoder, encoder } from '../bytes.js';

/** @typedef {import('./index.js').Transport} Transport */
/** @typedef {import('./index.js').TransportCallbacks} TransportCallbacks */

/**
 * pushwire.v1 over a WebSocket: text envelopes in text frames, binary data in binary
 * frames (JSON header, 0x0A, raw bytes).
 * @implements {Transport}
 */
export class WebSocketTransport {
  /** @param {string} url a ws:// or wss:// URL @param {TransportCallbacks} callbacks */
  constructor(url, callbacks) {
    this.name = 'websocket';
    this.url = url;
    this.callbacks = callbacks;
    /** @type {WebSocket|null} */
    this.socket = null;
  }

  get bufferedAmount() {
    return this.socket ? this.socket.bufferedAmount : 0;
  }

  open() {
    const socket = new WebSocket(this.url, [SUBPROTOCOL]);
    socket.binaryType = 'arraybuffer';
    this.socket = socket;
    socket.onopen = () => {
      if (socket.protocol !== SUBPROTOCOL) {
        // A server without pushwire.v1 on this path: this transport cannot be used.
        this.abort();
        this.callbacks.onclose(1006, `the server did not accept ${SUBPROTOCOL}`, false);
        return;
      }
      this.callbacks.onopen();
    };
    socket.onmessage = (event) => this._receive(event.data);
    socket.onclose = (event) => {
      this.socket = null;
      this.callbacks.onclose(event.code, event.reason, event.wasClean);
    };
  }

  /** @param {string|ArrayBuffer} data */
  _receive(data) {
    let envelope;
    let bytes = null;
    try {
      if (typeof data === 'string') {
        envelope = JSON.parse(data);
      } else {
        const frame = new Uint8Array(data);
        const end = frame.indexOf(NEWLINE);
        if (end < 0) throw new Error('binary envelope without the newline after its header');
        envelope = JSON.parse(decoder.decode(frame.subarray(0, end)));
        bytes = frame.slice(end + 1);
      }
      if (envelope === null || typeof envelope !== 'object' || typeof envelope.type !== 'string') {
        throw new Error('envelope without a string "type"');
      }
    } catch (error) {
      // The server broke pushwire.v1: 4100, as the protocol names it.
      this.close(4100, String(error.message || error).slice(0, 100));
      return;
    }
    this.callbacks.onenvelope(envelope, bytes);
  }

  /** @param {Object} envelope @param {Uint8Array|null} bytes */
  send(envelope, bytes) {
    if (!this.socket) return;
    if (bytes === null) {
      this.socket.send(JSON.stringify(envelope));
      return;
    }
    const header = encoder.encode(JSON.stringify(envelope));
    const frame = new Uint8Array(header.length + 1 + bytes.length);
    frame.set(header, 0);
    frame[header.length] = NEWLINE;
    frame.set(bytes, header.length + 1);
    this.socket.send(frame);
  }

  /** @param {number} code @param {string} reason */
  close(code, reason) {
    if (this.socket) this.socket.close(code, reason);
  }

  abort() {
    const socket = this.socket;
    this.socket = null;
    if (!socket) return;
    socket.onopen = socket.onmessage = socket.onclose = null;
    socket.close();
  }
}
