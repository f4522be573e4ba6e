import { parseRetryAfter } from './backoff.js';
import { CLOSED } from './constants.js';
import { fromBase64 } from './bytes.js';

/** @typedef {import('./pushwire.js').Pushwire} Pushwire */

/**
 * Pushwire's incoming envelopes: each goes to the part that handles it, and messages
 * (channel or direct) become `message` events, each delivered once.
 * Mixed into `Pushwire.prototype` (pushwire.js): `this` is the Pushwire.
 */
export class Incoming {
  /** @this {Pushwire} */
  _receive(envelope, bytes) {
    if (this._readyState === CLOSED) return;
    this._lastReceived = Date.now();
    switch (envelope.type) {
      case 'welcome': return this._welcome(envelope);
      case 'message': return this._message(envelope, bytes);
      case 'subscribed': return this._subscribed(envelope);
      case 'unsubscribed':
      case 'published':
      case 'refreshed': return this._answered(envelope);
      case 'error':
        if (envelope.code === 'token_expired' && envelope.id === undefined) {
          // The server closes this connection next (4005): the next hello needs a new
          // token, and with getToken the app need not hear of it.
          this._staleToken = true;
          if (this._refreshes()) return undefined;
        }
        if (envelope.code === 'limit' || envelope.code === 'rate_limited') {
          // A close 4029 may follow: it waits what this says.
          this._saidWait = parseRetryAfter(envelope.retry_after);
        }
        return this._serverError(envelope);
      case 'presence': return this._presenceSnapshot(envelope);
      case 'join':
      case 'leave': return this._presenceChange(envelope);
      case 'gap': {
        if (typeof envelope.channel !== 'string') {
          // Direct messages the user's inbox no longer held.
          if (envelope.to) this._inbox = { epoch: envelope.to.epoch, offset: envelope.to.offset };
          return this._gap(null, envelope.from, envelope.to);
        }
        // Told from the last position this client has: a node recovering a channel for all
        // its subscribers after a broker outage starts where the channel stood there, and a
        // client that subscribed again meanwhile may have passed `to` already (no gap then).
        const state = this._channels.get(envelope.channel);
        let from = envelope.from;
        if (state && envelope.to && from) {
          const { epoch, offset } = state;
          if (epoch === envelope.to.epoch && offset >= envelope.to.offset) return undefined;
          if (epoch === envelope.to.epoch || (epoch === from.epoch && offset > from.offset)) {
            from = { epoch, offset };
          }
          state.epoch = envelope.to.epoch;
          state.offset = envelope.to.offset;
        }
        return this.dispatchEvent(Object.assign(new Event('gap'), {
          channel: envelope.channel, from, to: envelope.to,
        }));
      }
      case 'close': {
        // HTTP transports: the server ends this connection with a close code.
        const transport = this._transport;
        this._transport = null;
        if (transport) transport.abort();
        return this._transportClosed(Number(envelope.code) || 1006, String(envelope.reason || ''), true);
      }
      default: return undefined; // pong and envelopes of later versions
    }
  }

  /** @this {Pushwire} */
  _message(envelope, bytes) {
    let data;
    if (bytes !== null) data = bytes;
    else if (typeof envelope.data64 === 'string') data = fromBase64(envelope.data64);
    else data = typeof envelope.data === 'string' ? envelope.data : '';
    const channel = typeof envelope.channel === 'string' ? envelope.channel : null;
    let lastEventId = '';
    if (channel !== null) {
      let state = this._channels.get(channel);
      if (state && state.offset !== null && state.epoch === envelope.epoch && envelope.offset <= state.offset) {
        return; // seen already (recovery overlaps what arrived live)
      }
      if (state) {
        state.epoch = envelope.epoch;
        state.offset = envelope.offset;
      }
      lastEventId = `${envelope.epoch}:${envelope.offset}`;
    } else if (typeof envelope.epoch === 'string') {
      // A direct message to the user, at its place in the user's inbox.
      const last = this._inbox;
      if (last && last.epoch === envelope.epoch && envelope.offset <= last.offset) {
        return; // seen already (recovery overlaps what arrived live)
      }
      if (last && (last.epoch !== envelope.epoch || envelope.offset > last.offset + 1)) {
        // The server reports every loss with a gap first; this catches a new epoch live.
        this._gap(null, last, { epoch: envelope.epoch, offset: envelope.offset - 1 });
      }
      /** @type {{epoch: string, offset: number}|null} */
      this._inbox = { epoch: envelope.epoch, offset: envelope.offset };
      lastEventId = `${envelope.epoch}:${envelope.offset}`;
    }
    if (typeof data !== 'string') {
      data = this._binaryType === 'arraybuffer' ? data.buffer : new Blob([data]);
    }
    const event = new MessageEvent('message', { data, origin: this._origin, lastEventId });
    Object.defineProperties(event, {
      channel: { value: channel, enumerable: true },
      epoch: { value: lastEventId ? envelope.epoch : null, enumerable: true },
      offset: { value: lastEventId ? envelope.offset : null, enumerable: true },
    });
    this.dispatchEvent(event);
  }

  /** @this {Pushwire} */
  _gap(channel, from, to) {
    return this.dispatchEvent(Object.assign(new Event('gap'), { channel, from, to }));
  }
}
