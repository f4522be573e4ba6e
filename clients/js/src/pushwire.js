/*
 * pushwire.js: the browser client of pushwire (docs/protocol.md, `pushwire.v1`).
 *
 * `new Pushwire(url, options)` behaves like the browser's `WebSocket` (readyState, events,
 * send, close, bufferedAmount, binaryType) and adds channels (`subscribe`, `publish`),
 * presence, and reconnection that the application does not see: a dropped connection is
 * resumed with the same session, channels are recovered from their last offset, and
 * nothing is delivered twice.
 *
 * This module holds the class and its WebSocket-like surface; its other parts are written
 * as classes of methods in their own modules and mixed into `Pushwire.prototype` below.
 * Plain ES2020, no dependencies. clients/js/build.mjs bundles it into
 * src/pushwire/static/pushwire.js (a script: the global `Pushwire`) and pushwire.mjs.
 */
import { CLOSED, CLOSING, CONNECTING, OPEN, SUBPROTOCOL } from './constants.js';
import { utf8Length } from './bytes.js';
import { resolveUrl } from './urls.js';
import { DEFAULTS } from './options.js';
import { Channels } from './channels.js';
import { Connecting } from './connecting.js';
import { Incoming } from './incoming.js';
import { Outgoing } from './outgoing.js';
import { Presence } from './presence.js';
import { Requests } from './requests.js';
import { Session } from './session.js';
import { Tokens } from './tokens.js';
import {
  IframeTransport,
  LongpollTransport,
  PollingTransport,
  SseTransport,
  StreamTransport,
  WebSocketTransport,
} from './transports/index.js';

/** @typedef {import('./options.js').PushwireOptions} PushwireOptions */
/** @typedef {import('./options.js').ResolvedOptions} ResolvedOptions */
/** @typedef {import('./transports/index.js').Transport} Transport */

const HANDLER_EVENTS = ['open', 'message', 'error', 'close'];

/**
 * A pushwire connection that behaves like `WebSocket`.
 *
 * Events: `open`, `message` (MessageEvent with `channel`, `epoch`, `offset`: a direct
 * message to the user has `channel` null and its place in the user's inbox),
 * `error` (as WebSocket's, before a `close` that was not clean; or, with `operation`,
 * `channel`, `code`, `message` and `attempts` and the connection going on, something the
 * client did for the app was given up: a re-subscription after a reconnection that was
 * refused or stayed `unavailable` through `options.retry`, docs/protocol.md), `close`
 * (CloseEvent), and, for channels subscribed with `{presence: true}`,
 * `presence` (`channel`, `count`, `members`, `truncated`: whenever who is there changed),
 * `join` and `leave` (`channel`, `count`, `member`: `{member, user, info}`), `reconnecting`,
 * `reconnected`, `expired` (`session`: the old session is gone; its direct messages are
 * recovered from the user's inbox), `gap` (`channel`, `from`, `to`: messages that cannot be
 * recovered; `channel` null for direct messages),
 * `servererror` (`code`, `message`: an `error` envelope that answers no request),
 * `transport` (`transport`, `previous`: the connection now runs on another transport),
 * `backoff` (`code`, `reason`, `retryAfter`: the server said to back off; the client waits
 * that many seconds at least before it tries again, connecting.js).
 *
 * Tokens: `options.token` is the first; with `options.getToken` the client refreshes it
 * before it expires and comes back with a new one after it did (tokens.js); without, an
 * expired token ends the connection with `close` code 4005.
 *
 * Transports are tried in `options.transports` order, each for at most `connectTimeout`;
 * one that fails before `welcome` passes the turn to the next. After a drop the client
 * starts again from the transport that worked last and goes round the list from there.
 */
export class Pushwire extends EventTarget {
  /** @param {string} url @param {PushwireOptions} [options] */
  constructor(url, options) {
    super();
    this._url = resolveUrl(url);
    this._origin = new URL(this._url).origin;
    /** @type {ResolvedOptions} */
    this._options = Object.assign({}, DEFAULTS, options || {});
    this._readyState = CONNECTING;
    this._binaryType = 'blob';
    this._protocol = '';
    /** @type {string|null} */
    this._session = null;
    /** @type {string|null} the session's resume secret, from the welcome; never shown */
    this._resume = null;
    /** @type {string|null} */
    this._user = this._options.user == null ? null : String(this._options.user);
    /** @type {string|null} the token the next hello carries: options.token, then getToken's */
    this._token = this._options.token == null ? null : String(this._options.token);
    this._staleToken = false; // the token expired: a new one before the next hello
    this._refreshTimer = null;
    /** @type {Transport|null} */
    this._transport = null;
    this._transportName = null; // the transport of the last welcome
    this._lastWorking = 0; // index in options.transports of the transport that worked last
    this._live = false; // welcome received on the current transport
    this._recycling = false; // the transport is reopening its downstream (iframe recycle)
    this._attempt = { index: 0, tried: 0 }; // the transport being tried, and how many before it
    this._everOpened = false;
    /** @type {any} {code, reason} once close() was called */
    this._closeRequested = null;
    this._connectTimer = null;
    this._reconnectTimer = null;
    this._reconnectAttempt = 0;
    /** @type {number|null} seconds an `error` said to back off, for the close 4029 after it */
    this._saidWait = null;
    // Outgoing envelopes in order: sends and publishes wait here while not live, and a Blob
    // waits here until read, so that order is kept.
    this._queue = [];
    this._queuedBytes = 0;
    this._discardedBytes = 0;
    this._nextId = 1;
    /** @type {Map<number, Object>} requests sent and not answered yet */
    this._requests = new Map();
    /** @type {Map<string, Object>} channel -> {presence, epoch, offset, waiters, members} */
    this._channels = new Map();
    /** @type {{epoch: string, offset: number}|null} the last direct message the client has */
    this._inbox = this._options.inboxSince ? { ...this._options.inboxSince } : null;
    this._heartbeatTimer = null;
    this._lastReceived = 0;
    this._handlers = {};
    this._connect();
  }

  get url() { return this._url; }
  get readyState() { return this._readyState; }
  get protocol() { return this._protocol; }
  get extensions() { return ''; }
  get transport() { return this._transportName; }
  get session() { return this._session; }
  get user() { return this._user; }
  /** The last direct message's place in the user's inbox ({epoch, offset}), or null. */
  get inboxPosition() { return this._inbox ? { ...this._inbox } : null; }

  get bufferedAmount() {
    const inSocket = this._transport && this._live ? this._transport.bufferedAmount : 0;
    return this._queuedBytes + inSocket + this._discardedBytes;
  }

  get binaryType() { return this._binaryType; }
  set binaryType(value) {
    if (value === 'blob' || value === 'arraybuffer') this._binaryType = value;
  }

  /**
   * Send a message to the endpoint (`{"type":"send"}`): echoed on /echo, published on
   * /ws/<channel>, given to the app on /pushwire.
   * @param {string|ArrayBuffer|ArrayBufferView|Blob} data
   * @throws {DOMException} InvalidStateError while CONNECTING
   */
  send(data) {
    if (this._readyState === CONNECTING) {
      throw new DOMException("Failed to execute 'send' on 'Pushwire': Still in CONNECTING state.", 'InvalidStateError');
    }
    const item = this._dataItem({ type: 'send' }, data);
    if (this._readyState !== OPEN) {
      this._discardedBytes += item.size; // as WebSocket: counted, never sent
      return;
    }
    this._enqueue(item);
  }

  /**
   * Close the connection; a clean close ends the session on the server.
   * @param {number} [code] 1000 or 3000-4999
   * @param {string} [reason] at most 123 UTF-8 bytes
   */
  close(code, reason) {
    if (code !== undefined) {
      let number = Number(code);
      number = Number.isFinite(number) ? Math.min(65535, Math.max(0, Math.round(number))) : 0;
      if (number !== 1000 && (number < 3000 || number > 4999)) {
        throw new DOMException(
          `Failed to execute 'close' on 'Pushwire': The close code must be either 1000, or between 3000 and 4999. ${number} is neither.`,
          'InvalidAccessError'
        );
      }
      code = number;
    }
    reason = reason === undefined ? '' : String(reason);
    if (utf8Length(reason) > 123) {
      throw new DOMException(
        "Failed to execute 'close' on 'Pushwire': The close reason must not be greater than 123 UTF-8 bytes.",
        'SyntaxError'
      );
    }
    if (this._readyState === CLOSING || this._readyState === CLOSED) return;
    this._closeRequested = { code: code === undefined ? 1000 : code, reason };
    if (this._readyState === CONNECTING) {
      // As WebSocket: closing before open fails the connection (error, then close 1006).
      this._readyState = CLOSING;
      this._dropTransport();
      setTimeout(() => this._finish(1006, '', false, true), 0);
      return;
    }
    this._readyState = CLOSING;
    if (!this._live) {
      // Between connections: nothing to close on the wire.
      const clean = this._queue.length === 0;
      this._dropTransport();
      setTimeout(() => this._finish(this._closeRequested.code, reason, clean, false), 0);
      return;
    }
    this._enqueue({ close: true, size: 0 });
  }

  /** The end: readyState CLOSED, `error` when not clean, then `close`. */
  _finish(code, reason, wasClean, withError) {
    if (this._readyState === CLOSED) return;
    clearTimeout(this._reconnectTimer);
    clearTimeout(this._connectTimer);
    clearTimeout(this._refreshTimer);
    this._dropTransport();
    this._readyState = CLOSED;
    const closed = new DOMException('the connection is closed', 'InvalidStateError');
    for (const request of this._requests.values()) {
      for (const waiter of request.waiters || [request]) waiter.reject(closed);
    }
    this._requests.clear();
    for (const state of this._channels.values()) {
      for (const waiter of state.waiters.splice(0)) waiter.reject(closed);
    }
    for (const item of this._queue) {
      if (item.request) item.request.reject(closed);
    }
    this._queue = [];
    this._queuedBytes = 0;
    if (withError) this.dispatchEvent(new Event('error'));
    this.dispatchEvent(new CloseEvent('close', { code, reason, wasClean }));
  }

  // -- event handler attributes (on<type>), as WebSocket has them ------------------------

  _setHandler(type, handler) {
    if (!(type in this._handlers)) {
      // Registered once, when first set: its place among listeners is that moment.
      this.addEventListener(type, (event) => {
        const current = this._handlers[type];
        if (typeof current === 'function') current.call(this, event);
      });
    }
    this._handlers[type] = typeof handler === 'function' ? handler : null;
  }

  // -- test hooks --------------------------------------------------------------------------

  /**
   * Close the current connection from this side with `code`, without telling the app;
   * the server answers the Close and the client reacts to the code it echoes.
   * @param {number} [code] 3000-4999, default 4000
   * @param {string} [reason]
   */
  _debugDropConnection(code, reason) {
    if (this._transport) this._transport.close(code === undefined ? 4000 : code, reason || 'dropped for a test');
  }
}

// The parts' methods, on Pushwire.prototype as if written in the class body above: the same
// attributes (writable, configurable, not enumerable) and one prototype chain. A name in two
// parts would let one silently replace the other: that is a mistake in this package.
for (const part of [Presence, Channels, Outgoing, Requests, Session, Tokens, Connecting, Incoming]) {
  const methods = Object.getOwnPropertyDescriptors(part.prototype);
  // @ts-expect-error: every class has a constructor; the parts' are not Pushwire's
  delete methods.constructor;
  for (const name of Object.keys(methods)) {
    if (Object.prototype.hasOwnProperty.call(Pushwire.prototype, name)) {
      throw new Error(`pushwire.js: ${part.name}.${name} is defined twice`);
    }
  }
  Object.defineProperties(Pushwire.prototype, methods);
}

for (const [name, value] of [['CONNECTING', CONNECTING], ['OPEN', OPEN], ['CLOSING', CLOSING], ['CLOSED', CLOSED]]) {
  Object.defineProperty(Pushwire, name, { value, enumerable: true });
  Object.defineProperty(Pushwire.prototype, name, { value, enumerable: true });
}
for (const type of HANDLER_EVENTS) {
  Object.defineProperty(Pushwire.prototype, 'on' + type, {
    get() { return this._handlers[type] || null; },
    set(handler) { this._setHandler(type, handler); },
    enumerable: true,
    configurable: true,
  });
}

/** Transports by name, as `options.transports` names them. */
Pushwire.transports = {
  websocket: WebSocketTransport,
  sse: SseTransport,
  stream: StreamTransport,
  iframe: IframeTransport,
  longpoll: LongpollTransport,
  polling: PollingTransport,
};
Pushwire.SUBPROTOCOL = SUBPROTOCOL;
