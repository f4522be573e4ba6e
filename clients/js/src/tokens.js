import { CLOSED, CLOSING, TOKEN_EXPIRED } from './constants.js';

/** @typedef {import('./pushwire.js').Pushwire} Pushwire */

// A token is refreshed after this share of the time it has left...
const REFRESH_SHARE = 0.8;
// ...and at least this long before it expires, ms.
const REFRESH_MARGIN_MS = 1000;

/**
 * Pushwire's connection token (docs/protocol.md, "Tokens that expire"): the one the next
 * hello carries, refreshed before it expires, renewed after it did.
 *
 * With `options.getToken` (`() => Promise<string>`): when the server says the token expires
 * (`expires` in the welcome or in `refreshed`), it is refreshed without reconnecting at about
 * 80% of the time it had left (at least 1 s before): a new token from `getToken`, sent in a
 * `refresh` envelope. A connection closed because the token expired (close 4005, or an `error`
 * `token_expired`) comes back with a new token from `getToken`, resuming its session. Without
 * it, an expired token ends the connection: `close` with code 4005.
 * Mixed into `Pushwire.prototype` (pushwire.js): `this` is the Pushwire.
 */
export class Tokens {
  /**
   * Whether the app gives new tokens.
   * @this {Pushwire}
   */
  _refreshes() {
    return typeof this._options.getToken === 'function';
  }

  /**
   * Plan the next refresh of a token that expires at `expires` (seconds since the epoch),
   * in place of any planned before.
   * @param {number|undefined|null} expires
   * @this {Pushwire}
   */
  _planRefresh(expires) {
    clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
    if (typeof expires !== 'number' || !this._refreshes()) return;
    const remaining = expires * 1000 - Date.now();
    const delay = Math.max(0, Math.min(REFRESH_SHARE * remaining, remaining - REFRESH_MARGIN_MS));
    this._refreshTimer = setTimeout(() => this._refreshToken(), delay);
  }

  /**
   * Ask the app for a new token and send it. A refusal (the server's `error`, which the app
   * sees as `servererror`) or a failed `getToken` leaves the old expiry: the server closes
   * the connection then (4005) and the client comes back with a new token.
   * @this {Pushwire}
   */
  _refreshToken() {
    this._refreshTimer = null;
    this._newToken().then(() => {
      if (!this._live || this._readyState >= CLOSING) return null; // the next hello has it
      return this._request({ type: 'refresh', token: this._token }, { kind: 'refresh' });
    }).then((answer) => {
      if (answer) this._planRefresh(answer.expires);
    }, (error) => {
      if (error && error.code && error.code !== 'disconnected') {
        this.dispatchEvent(Object.assign(new Event('servererror'), {
          code: error.code, message: error.message,
        }));
      }
    });
  }

  /**
   * A new token from `getToken`, for the next hello and refresh.
   * @this {Pushwire}
   */
  _newToken() {
    // @ts-expect-error: called only where _refreshes() found getToken a function
    return Promise.resolve().then(() => this._options.getToken()).then((token) => {
      if (typeof token !== 'string') throw new TypeError('getToken must give a string');
      /** @type {string|null} */
      this._token = token;
      this._staleToken = false;
    });
  }

  /**
   * The connection ended or was refused with `code`: whether the token is what must change
   * (4005, or an `error` `token_expired` came first).
   * @param {number} code
   * @this {Pushwire}
   */
  _tokenExpired(code) {
    if (code === TOKEN_EXPIRED) this._staleToken = true;
    return this._staleToken;
  }

  /**
   * Connect once a new token is in hand (`_connect` when the token expired). A `getToken`
   * that fails is asked again after the reconnection backoff.
   * @param {() => void} connect
   * @this {Pushwire}
   */
  _renewThen(connect) {
    this._newToken().then(() => {
      if (this._readyState !== CLOSED && !this._closeRequested) connect();
    }, () => {
      if (this._readyState !== CLOSED && !this._closeRequested) this._scheduleReconnect();
    });
  }
}
