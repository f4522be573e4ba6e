import { copyBytes, utf8Length } from './bytes.js';

/** @typedef {import('./pushwire.js').Pushwire} Pushwire */
/**
 * One envelope waiting in the queue, with its data: `bytes` once read (a Blob is read first),
 * `close` for the close that ends the queue, `request` for a publish awaiting its answer.
 * @typedef {Object} OutgoingItem
 * @property {Object} envelope
 * @property {Uint8Array|null} bytes
 * @property {Blob|null} blob
 * @property {number} size bytes on the wire, counted in bufferedAmount
 * @property {Promise<void>|null} reading
 * @property {boolean} [close]
 * @property {any} [request]
 */

/**
 * Pushwire's outgoing queue: send() and publish() wait here, in order, while the
 * connection is not live or a Blob is being read. Mixed into `Pushwire.prototype` (pushwire.js): `this` is the Pushwire.
 */
export class Outgoing {
  /**
   * An outgoing envelope with its data; a Blob starts being read at once.
   * @this {Pushwire}
   */
  _dataItem(envelope, data) {
    /** @type {OutgoingItem} */
    const item = { envelope, bytes: null, blob: null, size: 0, reading: null };
    if (typeof Blob !== 'undefined' && data instanceof Blob) {
      item.blob = data;
      item.size = utf8Length(JSON.stringify(envelope)) + 1 + data.size;
      item.reading = data.arrayBuffer().then(
        (buffer) => { item.bytes = new Uint8Array(buffer); item.blob = null; this._flush(); },
        () => { item.bytes = new Uint8Array(0); item.blob = null; this._flush(); }
      );
    } else if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) {
      item.bytes = copyBytes(data);
      item.size = utf8Length(JSON.stringify(envelope)) + 1 + item.bytes.length;
    } else {
      envelope.data = String(data);
      item.size = utf8Length(JSON.stringify(envelope));
    }
    return item;
  }

  /** @this {Pushwire} */
  _enqueue(item) {
    this._queue.push(item);
    this._queuedBytes += item.size;
    this._flush();
  }

  /**
   * Hand queued envelopes to the transport, in order, while live.
   * @this {Pushwire}
   */
  _flush() {
    while (this._live && this._queue.length > 0) {
      const item = this._queue[0];
      if (item.blob) return; // still being read: later items wait for it
      this._queue.shift();
      this._queuedBytes -= item.size;
      if (item.close) {
        this._transport.close(this._closeRequested.code, this._closeRequested.reason);
        return;
      }
      if (item.request) this._requests.set(item.request.id, item.request);
      this._transport.send(item.envelope, item.bytes);
    }
  }
}
