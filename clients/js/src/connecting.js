import { LIMITED, LIMITED_BACKOFF, MAX_SERVER_BACKOFF } from './backoff.js';
import { CLOSED, CONNECTING, OPEN, TOKEN_EXPIRED } from './constants.js';

/** @typedef {import('./pushwire.js').Pushwire} Pushwire */

/**
 * The close codes after which the client comes back (docs/protocol.md "Close codes"):
 * 1006 (dropped), 1001, 1011 and 4000-4099, except 4004 (the session was taken over by
 * another connection: coming back would only take it back and start a ping-pong).
 * @param {number} code
 */
function meansReconnect(code) {
  if (code === 4004) return false;
  return code === 1006 || code === 1001 || code === 1011 || (code >= 4000 && code <= 4099);
}

/**
 * Pushwire's transport choice and fallback: each transport of `options.transports` is
 * tried in turn until one is welcomed; a drop reconnects with backoff, from the transport
 * that worked last. Mixed into `Pushwire.prototype` (pushwire.js): `this` is the Pushwire.
 *
 * A server that says to back off (close 4029, after an `error` `limit` or `rate_limited`
 * with its `retry_after`; an HTTP 429, or 503 with Retry-After, where the transport can read
 * it: not a WebSocket's refused upgrade, an EventSource or the iframe) is not asked again,
 * by any transport, before the time it said (at most 60 s; 1 s when it said none): a
 * `backoff` event tells the app (`code`, `reason`, `retryAfter` in seconds). A first
 * connection refused so ends with `close` 4029, after that event.
 */
export class Connecting {
  /** Connect, starting with the transport that worked last (with a new token first when
   * the one in use expired).
   * @this {Pushwire}
   */
  _connect() {
    if (this._staleToken && this._refreshes()) {
      this._renewThen(() => this._connectNow());
      return;
    }
    this._connectNow();
  }

  /** @this {Pushwire} */
  _connectNow() {
    const count = this._options.transports.length;
    this._tryTransport(count > 0 ? this._lastWorking % count : 0, 0);
  }

  /**
   * Try `options.transports[index]`, the `tried`-th of this round; a failure before
   * welcome passes the turn to the next one, round the list, each once.
   * @this {Pushwire}
   */
  _tryTransport(index, tried) {
    const names = this._options.transports;
    if (tried >= names.length) {
      this._attemptFailed(1006, 'no usable transport', false);
      return;
    }
    const name = names[index];
    // `Pushwire.transports`, looked up at each attempt: a page may add its own.
    // @ts-expect-error: the constructor is Pushwire (or a page's subclass of it)
    const transports = this.constructor.transports;
    const Implementation = Object.prototype.hasOwnProperty.call(transports, name)
      ? transports[name] : null;
    if (!Implementation) {
      this._tryTransport((index + 1) % names.length, tried + 1);
      return;
    }
    this._attempt = { index, tried };
    const transport = new Implementation(this._endpointUrl(name), {
      onopen: () => {
        if (transport === this._transport) transport.send(this._hello(), null);
      },
      onenvelope: (envelope, bytes) => {
        if (transport === this._transport) this._receive(envelope, bytes);
      },
      onclose: (code, reason, wasClean, retryAfter) => {
        if (transport !== this._transport) return;
        this._transport = null;
        this._transportClosed(code, reason, wasClean, retryAfter);
      },
      // The server ended this connection to have it reopened at once (the iframe
      // document's size bound): the session goes on, and the app is not told.
      onrecycle: () => {
        if (transport !== this._transport) return;
        if (!this._live) {
          this._dropTransport();
          this._transportClosed(4000, 'stream recycled', true);
          return;
        }
        this._stopHeartbeat();
        this._live = false;
        this._recycling = true;
        this._failRequests();
        this._armConnectTimer(transport);
        transport.send(this._hello(), null);
      },
    }, this._options);
    this._transport = transport;
    this._live = false;
    this._armConnectTimer(transport);
    try {
      transport.open();
    } catch (error) {
      if (transport !== this._transport) return;
      this._transport = null;
      setTimeout(() => this._transportClosed(1006, String(error), false), 0);
    }
  }

  /**
   * An attempt without welcome within connectTimeout is given up.
   * @this {Pushwire}
   */
  _armConnectTimer(transport) {
    clearTimeout(this._connectTimer);
    this._connectTimer = setTimeout(() => {
      if (transport !== this._transport || this._live) return;
      this._dropTransport();
      this._transportClosed(1006, 'connect timeout', false);
    }, this._options.connectTimeout);
  }

  /**
   * The URL a transport is given; HTTP transports map it to their own paths.
   * @this {Pushwire}
   */
  _endpointUrl(name) {
    return this._url;
  }

  /** @this {Pushwire} */
  _dropTransport() {
    this._stopHeartbeat();
    clearTimeout(this._connectTimer);
    this._connectTimer = null;
    const transport = this._transport;
    this._transport = null;
    this._live = false;
    if (transport) transport.abort();
  }

  /**
   * @this {Pushwire}
   * @param {number} code @param {string} reason @param {boolean} wasClean
   * @param {number} [retryAfter] seconds the server said to back off (an HTTP answer)
   */
  _transportClosed(code, reason, wasClean, retryAfter) {
    this._stopHeartbeat();
    clearTimeout(this._connectTimer);
    this._connectTimer = null;
    // A recycle that did not come back is a drop like any other.
    const wasLive = this._live || this._recycling;
    this._live = false;
    this._recycling = false;
    this._failRequests();
    if (this._closeRequested || this._readyState === CLOSED) {
      this._finish(code, reason, wasClean, !wasClean);
      return;
    }
    const expired = this._tokenExpired(code);
    if (expired && !this._refreshes()) {
      // No way to a new token: the app is told the token expired.
      this._finish(TOKEN_EXPIRED, reason, wasClean, !wasClean);
      return;
    }
    const wait = this._serverWait(code, reason, retryAfter);
    if (wasLive) {
      if (this._options.reconnect && (meansReconnect(code) || expired)) {
        this._reconnectAttempt = 0;
        this.dispatchEvent(Object.assign(new Event('reconnecting'), { code, reason }));
        this._scheduleReconnect(wait);
      } else {
        this._finish(code, reason, wasClean, !wasClean);
      }
      return;
    }
    // The attempt failed before welcome. Refused for its token: every transport would be,
    // so a new token first (after the backoff).
    if (expired) {
      this._scheduleReconnect();
      return;
    }
    // A server that refused us said so with its code.
    if (code !== 1006 && !meansReconnect(code)) {
      this._finish(code, reason, wasClean, !wasClean);
      return;
    }
    if (wait > 0) {
      // Told to back off: the bound is this client's, so no other transport before then.
      if (!this._everOpened) this._finish(code, reason, wasClean, !wasClean);
      else this._scheduleReconnect(wait);
      return;
    }
    const names = this._options.transports;
    const { index, tried } = this._attempt;
    this._tryTransport((index + 1) % names.length, tried + 1);
  }

  /** @this {Pushwire} */
  _attemptFailed(code, reason, wasClean) {
    if (!this._everOpened) {
      this._finish(1006, '', false, true); // as WebSocket: error, then close 1006
      return;
    }
    this._scheduleReconnect();
  }

  /**
   * The least wait the server asked for with this close, seconds (0: none), told to the
   * app with a `backoff` event: `retryAfter` from an HTTP answer, or for a close 4029 what
   * the `error` before it said (1 s when nothing).
   * @this {Pushwire}
   * @param {number} code @param {string} reason @param {number} [retryAfter]
   */
  _serverWait(code, reason, retryAfter) {
    /** @type {number|null} */
    let wait = typeof retryAfter === 'number' ? retryAfter : null;
    if (wait === null && code === LIMITED) {
      const said = this._saidWait;
      wait = typeof said === 'number' ? said : LIMITED_BACKOFF;
    }
    this._saidWait = null;
    if (wait === null) return 0;
    wait = Math.min(wait, MAX_SERVER_BACKOFF);
    this.dispatchEvent(Object.assign(new Event('backoff'), { code, reason, retryAfter: wait }));
    return wait;
  }

  /**
   * Exponential backoff with full jitter: a random wait up to min(max, base * 2^n); at
   * least `floor` seconds (what the server asked for).
   * @this {Pushwire}
   * @param {number} [floor]
   */
  _scheduleReconnect(floor = 0) {
    const bound = Math.min(
      this._options.reconnectDelayMax,
      this._options.reconnectDelay * Math.pow(2, this._reconnectAttempt)
    );
    this._reconnectAttempt++;
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = null;
      const state = this._readyState;
      if ((state === OPEN || state === CONNECTING) && !this._closeRequested) this._connect();
    }, Math.max(Math.random() * bound, floor * 1000));
  }
}
