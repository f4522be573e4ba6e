import { CLOSING } from './constants.js';

/** @typedef {import('./pushwire.js').Pushwire} Pushwire */

/**
 * Pushwire's requests: envelopes with an `id` that the server answers (`published`,
 * `unsubscribed`, `presence`, or an `error`), and what becomes of them when the
 * connection drops. Mixed into `Pushwire.prototype` (pushwire.js): `this` is the Pushwire.
 */
export class Requests {
  /**
   * Send a request at once when live (subscribe/unsubscribe do not wait behind data).
   * @this {Pushwire}
   */
  _request(envelope, request) {
    return new Promise((resolve, reject) => {
      const id = this._nextId++;
      envelope.id = id;
      this._requests.set(id, Object.assign({ id, resolve, reject }, request));
      this._transport.send(envelope, null);
    });
  }

  /** @this {Pushwire} */
  _requestError(code, message) {
    /** @type {Error & {code?: string}} */
    const error = new Error(message);
    error.code = code;
    return error;
  }

  /** @this {Pushwire} */
  _answered(envelope) {
    const request = this._requests.get(envelope.id);
    if (!request) return;
    this._requests.delete(envelope.id);
    const answer = { channel: envelope.channel };
    if (envelope.type === 'published') {
      answer.epoch = envelope.epoch;
      answer.offset = envelope.offset;
    } else if (envelope.type === 'refreshed') {
      answer.expires = envelope.expires;
    }
    request.resolve(answer);
  }

  /** @this {Pushwire} */
  _serverError(envelope) {
    const error = this._requestError(envelope.code, envelope.message || envelope.code);
    const request = envelope.id === undefined ? undefined : this._requests.get(envelope.id);
    if (!request) {
      this.dispatchEvent(Object.assign(new Event('servererror'), {
        code: envelope.code, message: envelope.message,
      }));
      return;
    }
    this._requests.delete(envelope.id);
    if (request.kind === 'subscribe') {
      const channel = request.channel;
      const state = this._channels.get(channel);
      if (state && envelope.code === 'unavailable') {
        // Still wanted: its waiters wait on (a drop meanwhile sends it again after welcome).
        state.waiters.push(...request.waiters);
        const again = () => {
          if (this._live && this._channels.get(channel) === state) this._sendSubscribe(channel, state);
        };
        if (this._retryLater(state, again)) return;
        request.waiters = state.waiters.splice(0); // given up: theirs to hear
      }
      if (state && state.waiters.length === 0) this._channels.delete(channel);
      for (const waiter of request.waiters) waiter.reject(error);
      if (state && request.waiters.length === 0) {
        // A re-subscription after a reconnection: nobody awaits it, and the channel is
        // no longer subscribed. The app must hear of it.
        this._giveUp('subscribe', error, channel, state && state.failures ? state.failures : 1);
      }
    } else if (request.kind === 'publish' && envelope.code === 'unavailable' && request.item &&
        this._retryLater(request, () => this._enqueue(request.item))) {
      // Sent again with the same idempotency key: the server publishes it once.
    } else {
      request.reject(error);
    }
  }

  /**
   * After a retryable failure of `holder` (a channel's state, or a publish request): call
   * `again` after the backoff of options.retry and say true, or say false once its attempts
   * are spent (its `failures` count them).
   * @this {Pushwire}
   */
  _retryLater(holder, again) {
    const retry = Object.assign({ attempts: 8, delay: 500, delayMax: 10000 }, this._options.retry);
    holder.failures = (holder.failures || 0) + 1;
    if (holder.failures >= retry.attempts) return false;
    const bound = Math.min(retry.delayMax, retry.delay * Math.pow(2, holder.failures - 1));
    clearTimeout(holder.retryTimer);
    holder.retryTimer = setTimeout(() => {
      holder.retryTimer = null;
      if (this._readyState < CLOSING) again();
    }, Math.random() * bound);
    return true;
  }

  /** Something failed for good that no promise reports: an `error` event that says what
   * (`operation`, `code`, `message`, `channel`, `attempts`); the connection goes on.
   * @this {Pushwire}
   */
  _giveUp(operation, error, channel, attempts) {
    this.dispatchEvent(Object.assign(new Event('error'), {
      operation, code: error.code, message: error.message, channel, attempts,
    }));
  }

  /**
   * Requests on the wire when a connection ends get no answer from it.
   * @this {Pushwire}
   */
  _failRequests() {
    const resend = [];
    for (const request of this._requests.values()) {
      if (request.kind === 'subscribe') {
        // Still wanted: sent again (with the others) after the next welcome.
        const state = this._channels.get(request.channel);
        if (state) state.waiters.push(...request.waiters);
        else for (const waiter of request.waiters) waiter.reject(this._requestError('unsubscribed', `unsubscribed from '${request.channel}'`));
      } else if (request.kind === 'unsubscribe') {
        request.resolve({ channel: request.channel }); // the server left it with the connection
      } else if (request.kind === 'publish' && request.item && (request.failures || 0) + 1 <
          Object.assign({ attempts: 8 }, this._options.retry).attempts) {
        // Sent again after the next welcome, before what waits, with the same idempotency
        // key: published once whether or not the server got it before the drop.
        request.failures = (request.failures || 0) + 1;
        resend.push(request.item);
      } else {
        request.reject(this._requestError(
          'disconnected',
          'the connection dropped before the server answered; the message may or may not have been published'
        ));
      }
    }
    this._requests.clear();
    for (const item of resend) this._queuedBytes += item.size;
    this._queue.unshift(...resend);
  }
}
