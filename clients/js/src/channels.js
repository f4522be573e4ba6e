import { CLOSING } from './constants.js';

/** @typedef {import('./pushwire.js').Pushwire} Pushwire */

/**
 * Pushwire's channels: subscribe, unsubscribe and publish, and the subscriptions sent
 * again (from their last offset) after each welcome. Mixed into `Pushwire.prototype`
 * (pushwire.js): `this` is the Pushwire.
 */
/** 16 random bytes as base64url: an idempotency key (crypto.randomUUID needs a secure
 * context; getRandomValues does not). */
function randomKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

export class Channels {
  /**
   * Join a channel; its messages arrive as `message` events with `channel` set.
   * @param {string} channel
   * @param {{presence?: boolean, rewind?: number}} [options] presence: also keep the channel's
   *   members (`presence(channel)`) and fire `presence`, `join` and `leave` events; rewind: first
   *   deliver the channel's last `rewind` messages from its history (a `gap` event for those it
   *   no longer holds), on the first subscription only (docs/protocol.md, "rewind")
   * @returns {Promise<{channel: string, epoch: string, offset: number}>}
   * @this {Pushwire}
   */
  subscribe(channel, options) {
    channel = String(channel);
    const presence = !!(options && options.presence);
    const wanted = options && options.rewind;
    const rewind = typeof wanted === 'number' && Number.isInteger(wanted) && wanted > 0 ? wanted : 0;
    return new Promise((resolve, reject) => {
      if (this._readyState >= CLOSING) {
        reject(new DOMException('the connection is closed', 'InvalidStateError'));
        return;
      }
      let state = this._channels.get(channel);
      if (!state) {
        state = {
          presence, rewind, epoch: null, offset: null, waiters: [], members: null, count: 0, truncated: false,
        };
        this._channels.set(channel, state);
      }
      state.presence = state.presence || presence;
      state.waiters.push({ resolve, reject });
      // Not live: the subscription is sent with the others after the next welcome.
      if (this._live) this._sendSubscribe(channel, state);
    });
  }

  /**
   * Leave a channel.
   * @param {string} channel
   * @returns {Promise<{channel: string}>}
   * @this {Pushwire}
   */
  unsubscribe(channel) {
    channel = String(channel);
    const state = this._channels.get(channel);
    this._channels.delete(channel);
    if (state) {
      const error = this._requestError('unsubscribed', `unsubscribed from '${channel}'`);
      for (const waiter of state.waiters.splice(0)) waiter.reject(error);
    }
    if (!this._live) {
      // The server left our channels when the connection ended; nothing to say to it.
      return Promise.resolve({ channel });
    }
    return this._request({ type: 'unsubscribe', channel }, { kind: 'unsubscribe', channel });
  }

  /**
   * Publish to a channel (subscribed or not). Queued in order with send() while not open.
   * It carries an idempotency key (options.idempotencyKey, or a random one), the same on
   * every attempt: after `unavailable` or a drop before the answer it is sent again
   * (options.retry of the constructor), and the server publishes it once.
   * @param {string} channel
   * @param {string|ArrayBuffer|ArrayBufferView|Blob} data
   * @param {{idempotencyKey?: string}} [options]
   * @returns {Promise<{channel: string, epoch: string, offset: number}>}
   * @this {Pushwire}
   */
  publish(channel, data, options) {
    if (this._readyState >= CLOSING) {
      return Promise.reject(new DOMException('the connection is closed', 'InvalidStateError'));
    }
    const key = options && options.idempotencyKey != null
      ? String(options.idempotencyKey) : randomKey();
    return new Promise((resolve, reject) => {
      const id = this._nextId++;
      const envelope = { type: 'publish', id, channel: String(channel), idempotency_key: key };
      const item = this._dataItem(envelope, data);
      item.request = { id, kind: 'publish', resolve, reject, item };
      this._enqueue(item);
    });
  }

  /** @this {Pushwire} */
  _sendSubscribe(channel, state) {
    clearTimeout(state.retryTimer); // this one replaces a retry that was waiting
    state.retryTimer = null;
    const id = this._nextId++;
    const envelope = { type: 'subscribe', id, channel };
    if (state.presence) envelope.presence = true;
    const recovering = state.offset !== null;
    if (recovering) envelope.since = { epoch: state.epoch, offset: state.offset };
    else if (state.rewind) envelope.rewind = state.rewind;
    const waiters = state.waiters.splice(0);
    this._requests.set(id, { id, kind: 'subscribe', channel, recovering, waiters });
    this._transport.send(envelope, null);
  }

  /** @this {Pushwire} */
  _subscribed(envelope) {
    const request = this._requests.get(envelope.id);
    if (!request || request.kind !== 'subscribe') return;
    this._requests.delete(envelope.id);
    const state = this._channels.get(request.channel);
    if (state) state.failures = 0;
    if (state && state.offset === null) {
      // A new subscription: messages after this position are the channel's next ones (with
      // rewind, its last messages from history come first).
      state.epoch = envelope.epoch;
      state.offset = Math.max(0, envelope.offset - (state.rewind || 0));
    }
    const answer = { channel: envelope.channel, epoch: envelope.epoch, offset: envelope.offset };
    for (const waiter of request.waiters) waiter.resolve(answer);
  }
}
