/*
 * pushwire.js: the browser client of pushwire (docs/protocol.md, `pushwire.v1`).
 *
 * `new Pushwire(url, options)` behaves like the browser's `WebSocket` (readyState, events,
 * send, close, bufferedAmount, binaryType) and adds channels (`subscribe`, `publish`),
 * presence, and reconnection that the application does not see: a dropped connection is
 * resumed with the same session, channels are recovered from their last offset, and
 * nothing is delivered twice.
 *
 * Plain ES2020, no build step, no dependencies. Load it with `<script src="/pushwire.js">`
 * (defines `window.Pushwire`) or `require()` it where `module` exists.
 */
(function (root) {
  'use strict';

  const SUBPROTOCOL = 'pushwire.v1';
  const CONNECTING = 0;
  const OPEN = 1;
  const CLOSING = 2;
  const CLOSED = 3;
  const NEWLINE = 0x0a;
  // Acknowledge direct messages at most this often, or at once past ACK_EVERY unacknowledged:
  // the server keeps unacknowledged messages (bounded by max_unacked) until then.
  const ACK_DELAY_MS = 50;
  const ACK_EVERY = 100;

  const encoder = new TextEncoder();
  const decoder = new TextDecoder();

  /** @param {string} text @returns {number} its size in UTF-8 bytes */
  function utf8Length(text) {
    return encoder.encode(text).length;
  }

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
   * `url` made absolute, with http(s) mapped to ws(s), as `new WebSocket(url)` does.
   * @param {string} url
   * @returns {string}
   */
  function resolveUrl(url) {
    const base = typeof location !== 'undefined' ? location.href : undefined;
    let parsed;
    try {
      parsed = new URL(String(url), base);
    } catch (cause) {
      throw new DOMException(`The URL '${url}' is invalid.`, 'SyntaxError');
    }
    if (parsed.protocol === 'http:') parsed.protocol = 'ws:';
    else if (parsed.protocol === 'https:') parsed.protocol = 'wss:';
    if (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:') {
      throw new DOMException(
        `The URL's scheme must be 'ws', 'wss', 'http' or 'https'; '${parsed.protocol}' is not allowed.`,
        'SyntaxError'
      );
    }
    parsed.hash = '';
    return parsed.href;
  }

  /** @param {string} text standard base64 @returns {Uint8Array} */
  function fromBase64(text) {
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  /**
   * A copy of binary application data as bytes (send() copies, like WebSocket.send).
   * @param {ArrayBuffer|ArrayBufferView} data
   * @returns {Uint8Array}
   */
  function copyBytes(data) {
    if (data instanceof ArrayBuffer) return new Uint8Array(data.slice(0));
    return new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
  }

  /**
   * @typedef {Object} TransportCallbacks
   * @property {() => void} onopen the connection is up; the client sends `hello` next
   * @property {(envelope: Object, bytes: Uint8Array|null) => void} onenvelope an envelope
   *   arrived; `bytes` is its binary data when it came as raw bytes
   * @property {(code: number, reason: string, wasClean: boolean) => void} onclose the
   *   connection ended (1006 when it dropped or could not be opened)
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

  /**
   * pushwire.v1 over a WebSocket: text envelopes in text frames, binary data in binary
   * frames (JSON header, 0x0A, raw bytes).
   * @implements {Transport}
   */
  class WebSocketTransport {
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

  /**
   * @typedef {Object} PushwireOptions
   * @property {string} [user] the user id claimed in `hello`
   * @property {string} [token] the credential handed to the server's connect handler
   * @property {string[]} [transports] transport names, tried in this order
   * @property {boolean} [reconnect] come back after a drop (default true)
   * @property {number} [reconnectDelay] backoff base, ms (default 500)
   * @property {number} [reconnectDelayMax] backoff bound, ms (default 10000)
   * @property {number} [connectTimeout] an attempt without `welcome` after this is given up, ms
   */

  const DEFAULTS = {
    user: null,
    token: null,
    transports: ['websocket'],
    reconnect: true,
    reconnectDelay: 500,
    reconnectDelayMax: 10000,
    connectTimeout: 10000,
  };

  const HANDLER_EVENTS = ['open', 'message', 'error', 'close'];

  /**
   * A pushwire connection that behaves like `WebSocket`.
   *
   * Events: `open`, `message` (MessageEvent with `channel`, `epoch`, `offset`, `seq`),
   * `error`, `close` (CloseEvent), and `presence` (`channel`, `count`), `reconnecting`,
   * `reconnected`, `expired` (`session`: the old session was lost with its direct
   * messages), `gap` (`channel`, `from`, `to`: channel messages that cannot be recovered),
   * `servererror` (`code`, `message`: an `error` envelope that answers no request).
   */
  class Pushwire extends EventTarget {
    /** @param {string} url @param {PushwireOptions} [options] */
    constructor(url, options) {
      super();
      this._url = resolveUrl(url);
      this._origin = new URL(this._url).origin;
      /** @type {PushwireOptions} */
      this._options = Object.assign({}, DEFAULTS, options || {});
      this._readyState = CONNECTING;
      this._binaryType = 'blob';
      this._protocol = '';
      /** @type {string|null} */
      this._session = null;
      /** @type {string|null} */
      this._user = this._options.user == null ? null : String(this._options.user);
      /** @type {Transport|null} */
      this._transport = null;
      this._transportName = null;
      this._live = false; // welcome received on the current transport
      this._everOpened = false;
      this._closeRequested = null; // {code, reason} once close() was called
      this._connectTimer = null;
      this._reconnectTimer = null;
      this._reconnectAttempt = 0;
      // Outgoing envelopes in order: sends and publishes wait here while not live, and a Blob
      // waits here until read, so that order is kept.
      this._queue = [];
      this._queuedBytes = 0;
      this._discardedBytes = 0;
      this._nextId = 1;
      /** @type {Map<number, Object>} requests sent and not answered yet */
      this._requests = new Map();
      /** @type {Map<string, Object>} channel -> {presence, epoch, offset, waiters} */
      this._channels = new Map();
      this._lastSeq = 0;
      this._ackedSeq = 0;
      this._ackTimer = null;
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

    /**
     * Join a channel; its messages arrive as `message` events with `channel` set.
     * @param {string} channel
     * @param {{presence?: boolean}} [options] presence: also fire `presence` events
     * @returns {Promise<{channel: string, epoch: string, offset: number}>}
     */
    subscribe(channel, options) {
      channel = String(channel);
      const presence = !!(options && options.presence);
      return new Promise((resolve, reject) => {
        if (this._readyState >= CLOSING) {
          reject(new DOMException('the connection is closed', 'InvalidStateError'));
          return;
        }
        let state = this._channels.get(channel);
        if (!state) {
          state = { presence, epoch: null, offset: null, waiters: [] };
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
     * @param {string} channel
     * @param {string|ArrayBuffer|ArrayBufferView|Blob} data
     * @returns {Promise<{channel: string, epoch: string, offset: number}>}
     */
    publish(channel, data) {
      if (this._readyState >= CLOSING) {
        return Promise.reject(new DOMException('the connection is closed', 'InvalidStateError'));
      }
      return new Promise((resolve, reject) => {
        const id = this._nextId++;
        const item = this._dataItem({ type: 'publish', id, channel: String(channel) }, data);
        item.request = { id, kind: 'publish', resolve, reject };
        this._enqueue(item);
      });
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
     */
    _debugDropConnection(code, reason) {
      if (this._transport) this._transport.close(code === undefined ? 4000 : code, reason || 'dropped for a test');
    }

    // -- outgoing ------------------------------------------------------------------------------

    /** An outgoing envelope with its data; a Blob starts being read at once. */
    _dataItem(envelope, data) {
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

    _enqueue(item) {
      this._queue.push(item);
      this._queuedBytes += item.size;
      this._flush();
    }

    /** Hand queued envelopes to the transport, in order, while live. */
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

    /** Send a request at once when live (subscribe/unsubscribe do not wait behind data). */
    _request(envelope, request) {
      return new Promise((resolve, reject) => {
        const id = this._nextId++;
        envelope.id = id;
        this._requests.set(id, Object.assign({ id, resolve, reject }, request));
        this._transport.send(envelope, null);
      });
    }

    _sendSubscribe(channel, state) {
      const id = this._nextId++;
      const envelope = { type: 'subscribe', id, channel };
      if (state.presence) envelope.presence = true;
      const recovering = state.offset !== null;
      if (recovering) envelope.since = { epoch: state.epoch, offset: state.offset };
      const waiters = state.waiters.splice(0);
      this._requests.set(id, { id, kind: 'subscribe', channel, recovering, waiters });
      this._transport.send(envelope, null);
    }

    _requestError(code, message) {
      const error = new Error(message);
      error.code = code;
      return error;
    }

    _scheduleAck() {
      if (this._lastSeq - this._ackedSeq >= ACK_EVERY) {
        this._sendAck();
      } else if (this._ackTimer === null) {
        this._ackTimer = setTimeout(() => this._sendAck(), ACK_DELAY_MS);
      }
    }

    _sendAck() {
      clearTimeout(this._ackTimer);
      this._ackTimer = null;
      if (!this._live || this._lastSeq <= this._ackedSeq) return;
      this._ackedSeq = this._lastSeq;
      this._transport.send({ type: 'ack', seq: this._lastSeq }, null);
    }

    // -- connecting ------------------------------------------------------------------------------

    _connect() {
      this._tryTransport(0);
    }

    /** Try `options.transports[index]`; a failure before welcome moves on to the next one. */
    _tryTransport(index) {
      const names = this._options.transports;
      const name = names[index];
      const Implementation = Pushwire.transports[name];
      if (!Implementation) {
        if (index + 1 < names.length) this._tryTransport(index + 1);
        else this._attemptFailed(1006, 'no usable transport', false);
        return;
      }
      const transport = new Implementation(this._endpointUrl(name), {
        onopen: () => {
          if (transport !== this._transport) return;
          transport.send({
            type: 'hello',
            user: this._options.user == null ? null : String(this._options.user),
            token: this._options.token == null ? null : String(this._options.token),
            session: this._session,
            ack: this._lastSeq,
          }, null);
        },
        onenvelope: (envelope, bytes) => {
          if (transport === this._transport) this._receive(envelope, bytes);
        },
        onclose: (code, reason, wasClean) => {
          if (transport !== this._transport) return;
          this._transport = null;
          this._transportClosed(index, code, reason, wasClean);
        },
      });
      this._transport = transport;
      this._transportName = name;
      this._live = false;
      clearTimeout(this._connectTimer);
      this._connectTimer = setTimeout(() => {
        if (transport !== this._transport || this._live) return;
        this._dropTransport();
        this._transportClosed(index, 1006, 'connect timeout', false);
      }, this._options.connectTimeout);
      try {
        transport.open();
      } catch (error) {
        this._transport = null;
        setTimeout(() => this._transportClosed(index, 1006, String(error), false), 0);
      }
    }

    /** The URL of the endpoint for a transport; HTTP transports will map it to theirs. */
    _endpointUrl(name) {
      return this._url;
    }

    _dropTransport() {
      this._stopHeartbeat();
      clearTimeout(this._connectTimer);
      this._connectTimer = null;
      const transport = this._transport;
      this._transport = null;
      this._live = false;
      if (transport) transport.abort();
    }

    _transportClosed(index, code, reason, wasClean) {
      this._stopHeartbeat();
      clearTimeout(this._connectTimer);
      this._connectTimer = null;
      const wasLive = this._live;
      this._live = false;
      this._failRequests();
      if (this._closeRequested || this._readyState === CLOSED) {
        this._finish(code, reason, wasClean, !wasClean);
        return;
      }
      if (wasLive) {
        if (this._options.reconnect && meansReconnect(code)) {
          this._reconnectAttempt = 0;
          this.dispatchEvent(Object.assign(new Event('reconnecting'), { code, reason }));
          this._scheduleReconnect();
        } else {
          this._finish(code, reason, wasClean, !wasClean);
        }
        return;
      }
      // The attempt failed before welcome. A server that refused us said so with its code.
      if (code !== 1006 && !meansReconnect(code)) {
        this._finish(code, reason, wasClean, !wasClean);
        return;
      }
      if (index + 1 < this._options.transports.length) {
        this._tryTransport(index + 1);
        return;
      }
      this._attemptFailed(code, reason, wasClean);
    }

    _attemptFailed(code, reason, wasClean) {
      if (!this._everOpened) {
        this._finish(1006, '', false, true); // as WebSocket: error, then close 1006
        return;
      }
      this._scheduleReconnect();
    }

    /** Exponential backoff with full jitter: a random wait up to min(max, base * 2^n). */
    _scheduleReconnect() {
      const bound = Math.min(
        this._options.reconnectDelayMax,
        this._options.reconnectDelay * Math.pow(2, this._reconnectAttempt)
      );
      this._reconnectAttempt++;
      clearTimeout(this._reconnectTimer);
      this._reconnectTimer = setTimeout(() => {
        this._reconnectTimer = null;
        if (this._readyState === OPEN && !this._closeRequested) this._connect();
      }, Math.random() * bound);
    }

    /**
     * The browser cannot see the server's WebSocket pings, and a connection that died
     * without a FIN or RST (a sleeping laptop, a proxy that lost it) looks open for minutes.
     * So: after `heartbeat` seconds without an envelope, send `ping`; after two such periods
     * of silence, take the connection for dead (1006) and reconnect.
     * @param {number} seconds the server's heartbeat, from welcome
     */
    _startHeartbeat(seconds) {
      this._stopHeartbeat();
      const period = seconds * 1000;
      const transport = this._transport;
      this._lastReceived = Date.now();
      this._heartbeatTimer = setInterval(() => {
        if (transport !== this._transport || !this._live) return;
        const silent = Date.now() - this._lastReceived;
        if (silent >= 2 * period) {
          this._transport = null; // still live: _transportClosed treats it as a drop
          transport.abort();
          this._transportClosed(this._options.transports.length, 1006, 'no answer to ping', false);
        } else if (silent >= period) {
          transport.send({ type: 'ping' }, null);
        }
      }, period / 2);
    }

    _stopHeartbeat() {
      clearInterval(this._heartbeatTimer);
      this._heartbeatTimer = null;
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

    /** The end: readyState CLOSED, `error` when not clean, then `close`. */
    _finish(code, reason, wasClean, withError) {
      if (this._readyState === CLOSED) return;
      clearTimeout(this._reconnectTimer);
      clearTimeout(this._connectTimer);
      clearTimeout(this._ackTimer);
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

    // -- incoming --------------------------------------------------------------------------------

    _receive(envelope, bytes) {
      if (this._readyState === CLOSED) return;
      this._lastReceived = Date.now();
      switch (envelope.type) {
        case 'welcome': return this._welcome(envelope);
        case 'message': return this._message(envelope, bytes);
        case 'subscribed': return this._subscribed(envelope);
        case 'unsubscribed':
        case 'published': return this._answered(envelope);
        case 'error': return this._serverError(envelope);
        case 'presence':
          return this.dispatchEvent(Object.assign(new Event('presence'), {
            channel: envelope.channel, count: envelope.count,
          }));
        case 'gap': {
          const state = this._channels.get(envelope.channel);
          if (state && envelope.to) {
            state.epoch = envelope.to.epoch;
            state.offset = envelope.to.offset;
          }
          return this.dispatchEvent(Object.assign(new Event('gap'), {
            channel: envelope.channel, from: envelope.from, to: envelope.to,
          }));
        }
        case 'close': {
          // HTTP transports: the server ends this connection with a close code.
          const transport = this._transport;
          this._transport = null;
          if (transport) transport.abort();
          return this._transportClosed(
            this._options.transports.length, Number(envelope.code) || 1006, String(envelope.reason || ''), true
          );
        }
        default: return undefined; // pong and envelopes of later versions
      }
    }

    _welcome(envelope) {
      clearTimeout(this._connectTimer);
      this._connectTimer = null;
      const previous = this._session;
      this._session = envelope.session;
      if (envelope.user !== undefined) this._user = envelope.user;
      this._protocol = SUBPROTOCOL;
      this._live = true;
      this._reconnectAttempt = 0;
      this._startHeartbeat(Number(envelope.heartbeat) || 20);
      const reconnected = this._everOpened;
      if (envelope.expired !== undefined || (previous !== null && !envelope.resumed)) {
        // A new session: its direct messages count from 1 again; the old ones are lost.
        this._lastSeq = 0;
        this._ackedSeq = 0;
        this.dispatchEvent(Object.assign(new Event('expired'), { session: previous }));
      } else {
        this._ackedSeq = this._lastSeq; // hello carried the ack
      }
      for (const [channel, state] of this._channels) this._sendSubscribe(channel, state);
      this._flush();
      if (!reconnected) {
        this._everOpened = true;
        if (this._readyState === CONNECTING) this._readyState = OPEN;
        this.dispatchEvent(new Event('open'));
      } else {
        this.dispatchEvent(new Event('reconnected'));
      }
    }

    _message(envelope, bytes) {
      let data;
      if (bytes !== null) data = bytes;
      else if (typeof envelope.data64 === 'string') data = fromBase64(envelope.data64);
      else data = typeof envelope.data === 'string' ? envelope.data : '';
      const channel = typeof envelope.channel === 'string' ? envelope.channel : null;
      let seq = null;
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
      } else if (typeof envelope.seq === 'number') {
        seq = envelope.seq;
        if (seq <= this._lastSeq) return; // re-sent after a reconnect, seen already
        this._lastSeq = seq;
        this._scheduleAck();
      }
      if (typeof data !== 'string') {
        data = this._binaryType === 'arraybuffer' ? data.buffer : new Blob([data]);
      }
      const event = new MessageEvent('message', { data, origin: this._origin, lastEventId });
      Object.defineProperties(event, {
        channel: { value: channel, enumerable: true },
        epoch: { value: channel !== null ? envelope.epoch : null, enumerable: true },
        offset: { value: channel !== null ? envelope.offset : null, enumerable: true },
        seq: { value: seq, enumerable: true },
      });
      this.dispatchEvent(event);
    }

    _subscribed(envelope) {
      const request = this._requests.get(envelope.id);
      if (!request || request.kind !== 'subscribe') return;
      this._requests.delete(envelope.id);
      const state = this._channels.get(request.channel);
      if (state && state.offset === null) {
        // A new subscription: messages after this position are the channel's next ones.
        state.epoch = envelope.epoch;
        state.offset = envelope.offset;
      }
      const answer = { channel: envelope.channel, epoch: envelope.epoch, offset: envelope.offset };
      for (const waiter of request.waiters) waiter.resolve(answer);
    }

    _answered(envelope) {
      const request = this._requests.get(envelope.id);
      if (!request) return;
      this._requests.delete(envelope.id);
      const answer = { channel: envelope.channel };
      if (envelope.type === 'published') {
        answer.epoch = envelope.epoch;
        answer.offset = envelope.offset;
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

  /** Transports by name; later ones (sse, stream, longpoll, …) register here. */
  Pushwire.transports = { websocket: WebSocketTransport };
  Pushwire.SUBPROTOCOL = SUBPROTOCOL;

  root.Pushwire = Pushwire;
  if (typeof module !== 'undefined' && module.exports) module.exports = Pushwire;
})(typeof globalThis !== 'undefined' ? globalThis : this);
