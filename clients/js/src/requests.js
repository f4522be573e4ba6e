/**
 * Pushwire's requests: envelopes with an `id` that the server answers (`published`,
 * `unsubscribed`, `presence`, or an `error`), and what becomes of them when the
 * connection drops. Mixed into `Pushwire.prototype` (pushwire.js): `this` is the Pushwire.
 */
export class Requests {
  /** Send a request at once when live (subscribe/unsubscribe do not wait behind data). */
  _request(envelope, request) {
    return new Promise((resolve, reject) => {
      const id = this._nextId++;
      envelope.id = id;
      this._requests.set(id, Object.assign({ id, resolve, reject }, request));
      this._transport.send(envelope, null);
    });
  }

  _requestError(code, message) {
    const error = new Error(message);
    error.code = code;
    return error;
  }

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
      const state = this._channels.get(request.channel);
      if (state && state.waiters.length === 0) this._channels.delete(request.channel);
      for (const waiter of request.waiters) waiter.reject(error);
    } else {
      request.reject(error);
    }
  }

  /** Requests on the wire when a connection ends get no answer from it. */
  _failRequests() {
    clearTimeout(this._ackTimer);
    this._ackTimer = null;
    for (const request of this._requests.values()) {
      if (request.kind === 'subscribe') {
        // Still wanted: sent again (with the others) after the next welcome.
        const state = this._channels.get(request.channel);
        if (state) state.waiters.push(...request.waiters);
        else for (const waiter of request.waiters) waiter.reject(this._requestError('unsubscribed', `unsubscribed from '${request.channel}'`));
      } else if (request.kind === 'unsubscribe') {
        request.resolve({ channel: request.channel }); // the server left it with the connection
      } else {
        request.reject(this._requestError(
          'disconnected',
          'the connection dropped before the server answered; the message may or may not have been published'
        ));
      }
    }
    this._requests.clear();
  }
}
