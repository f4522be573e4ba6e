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

  /** @param {Uint8Array} bytes @returns {string} standard base64, padded */
  function toBase64(bytes) {
    let binary = '';
    const step = 0x8000; // String.fromCharCode takes its arguments on the stack
    for (let i = 0; i < bytes.length; i += step) {
      binary += String.fromCharCode.apply(null, bytes.subarray(i, i + step));
    }
    return btoa(binary);
  }

  /**
   * `url` (ws/wss/http/https) as http(s), with `/suffix` added to its path and `params` to
   * its query: the URLs of the HTTP transports of an endpoint (docs/protocol.md).
   * @param {string} url @param {string} suffix @param {Object<string, string>} params
   */
  function httpUrl(url, suffix, params) {
    const parsed = new URL(url);
    if (parsed.protocol === 'ws:') parsed.protocol = 'http:';
    else if (parsed.protocol === 'wss:') parsed.protocol = 'https:';
    if (suffix) parsed.pathname = parsed.pathname.replace(/\/+$/, '') + '/' + suffix;
    let query = parsed.search.replace(/^\?/, '');
    for (const [key, value] of Object.entries(params || {})) {
      query += (query ? '&' : '') + encodeURIComponent(key) + '=' + encodeURIComponent(value);
    }
    parsed.search = query;
    return parsed.href;
  }

  /** The page's origin, or null where there is none (a worker, Node). */
  function pageOrigin() {
    return typeof location !== 'undefined' && location.origin && location.origin !== 'null'
      ? location.origin : null;
  }

  // A POST body stays under this (the server's max_body_bytes is 1 MiB) unless one envelope
  // alone is larger.
  const MAX_POST_BYTES = 256 * 1024;
  // An iframe whose document ended (`load`) is taken for dropped after this long without the
  // `close` envelope: an iframe on another site lives in another process, whose `load` event
  // and last postMessage may arrive in either order. (A response cut mid-body fires no
  // `load` in Chromium: that drop is found by the core's pings.)
  const IFRAME_END_GRACE_MS = 250;
  // A poll answered 503 is asked again this many times (backoff 100 ms doubling to 2 s).
  const POLL_RETRIES = 6;
  // A POST refused with 409/410 waits this long for the downstream to say why.
  const STALL_MS = 2000;

  /**
   * What every HTTP transport shares (docs/protocol.md, "The HTTP transports"): `hello`
   * opens the downstream (`E/<name>?hello=…`, in the subclass), every later envelope goes up
   * in `POST E/send?session=S`, one a line, batched per event-loop turn, one POST at a time
   * so that order is kept. The session id comes from the welcome. A `close` envelope from
   * the server ends the connection with its code.
   * @implements {Transport}
   */
  class HttpTransport {
    /**
     * @param {string} name the transport, also the path suffix of its downstream
     * @param {string} url the endpoint (any scheme; mapped to http(s))
     * @param {TransportCallbacks} callbacks
     * @param {Object} [options] the Pushwire options (pollInterval)
     */
    constructor(name, url, callbacks, options) {
      this.name = name;
      this.url = httpUrl(url, '', {});
      this.callbacks = callbacks;
      this.options = options || {};
      this.serverOrigin = new URL(this.url).origin;
      const origin = pageOrigin();
      this.crossOrigin = origin !== this.serverOrigin;
      this.session = null;
      this._welcomed = false; // the current downstream delivered its welcome: POSTs may go
      this._generation = 0; // counts downstreams; a POST remembers the one it was sent under
      this._ended = false;
      this._closing = null; // {code, reason} once close() was called
      this._outgoing = []; // {line, size}
      this._outgoingBytes = 0;
      this._inFlight = null; // {lines, size, generation, controller}
      this._postScheduled = false;
      this._lastSeq = 0; // the highest direct-message seq delivered
      this._stalled = -1; // the generation whose POSTs the server refused (409/410)
      this._stallTimer = null;
    }

    get bufferedAmount() {
      return this._outgoingBytes + (this._inFlight ? this._inFlight.size : 0);
    }

    open() {
      // Nothing to connect yet: the downstream opens with the hello the core sends now.
      this.callbacks.onopen();
    }

    /** @param {Object} envelope @param {Uint8Array|null} bytes */
    send(envelope, bytes) {
      if (this._ended) return;
      if (envelope.type === 'hello') {
        this._welcomed = false;
        this._generation++;
        this._openDownstream(envelope);
        return;
      }
      const fields = bytes === null ? envelope : Object.assign({}, envelope, { data64: toBase64(bytes) });
      this._queue(JSON.stringify(fields));
    }

    _queue(line) {
      const size = utf8Length(line) + 1;
      this._outgoing.push({ line, size });
      this._outgoingBytes += size;
      if (this._postScheduled) return;
      this._postScheduled = true;
      // Envelopes queued in this turn of the event loop travel in one POST.
      queueMicrotask(() => {
        this._postScheduled = false;
        this._post();
      });
    }

    _post() {
      if (this._ended || this._inFlight || !this._welcomed || this._outgoing.length === 0) return;
      if (this._stalled === this._generation) return;
      const lines = [];
      let size = 0;
      while (this._outgoing.length > 0 && (lines.length === 0 || size + this._outgoing[0].size <= MAX_POST_BYTES)) {
        const item = this._outgoing.shift();
        lines.push(item);
        size += item.size;
      }
      this._outgoingBytes -= size;
      const controller = new AbortController();
      const post = { lines, size, generation: this._generation, controller };
      this._inFlight = post;
      const closes = lines.some((item) => item.close);
      fetch(httpUrl(this.url, 'send', { session: this.session }), {
        method: 'POST',
        // text/plain: a "simple" request, so a cross-origin POST needs no preflight.
        headers: { 'Content-Type': 'text/plain;charset=UTF-8' },
        body: lines.map((item) => item.line).join('\n'),
        credentials: 'include',
        cache: 'no-store',
        signal: controller.signal,
      }).then((response) => {
        if (post !== this._inFlight) return;
        this._inFlight = null;
        if (response.ok) {
          if (closes) this._finishClose();
          else this._post();
          return;
        }
        if (response.status === 409 || response.status === 410) {
          // not_connected / session_unknown: the server refused the whole batch before
          // reading a line of it, so it can go again, first. The downstream tells why: a
          // recycled iframe (the batch goes once the new one is welcomed), or a close.
          this._outgoing.unshift(...lines);
          this._outgoingBytes += size;
          if (post.generation === this._generation && this._welcomed) this._stall();
          else this._post();
          return;
        }
        if (response.status === 413) this._fail(1009, 'message too big for the server');
        else if (response.status === 400) this._fail(4100, 'the server refused an envelope');
        else this._fail(1006, `send failed: HTTP ${response.status}`);
      }, (error) => {
        if (post !== this._inFlight) return;
        this._inFlight = null;
        this._fail(1006, `send failed: ${error && error.message}`);
      });
    }

    /**
     * The server says this session has no connection, and the downstream has not said so
     * yet (its close, or the iframe's recycle, is on the way): sending waits for the next
     * downstream, and the connection counts as dropped if none comes within STALL_MS.
     */
    _stall() {
      const generation = this._generation;
      this._stalled = generation;
      clearTimeout(this._stallTimer);
      this._stallTimer = setTimeout(() => {
        if (this._generation === generation) this._fail(1006, 'the server lost this connection');
      }, STALL_MS);
    }

    /** @param {number} code @param {string} reason */
    close(code, reason) {
      if (this._ended || this._closing) return;
      this._closing = { code, reason };
      if (!this.session) {
        this._finishClose();
        return;
      }
      // A close envelope ends the session on the server, after what was sent before it.
      this._queue(JSON.stringify({ type: 'close', code, reason }));
      this._outgoing[this._outgoing.length - 1].close = true;
    }

    _finishClose() {
      if (this._ended) return;
      const { code, reason } = this._closing;
      this._end();
      this.callbacks.onclose(code, reason, true);
    }

    abort() {
      this._end();
    }

    _end() {
      if (this._ended) return;
      this._ended = true;
      clearTimeout(this._stallTimer);
      this._stopDownstream();
      if (this._inFlight) this._inFlight.controller.abort();
      this._inFlight = null;
      this._outgoing = [];
      this._outgoingBytes = 0;
    }

    /** The connection failed: no clean close. */
    _fail(code, reason) {
      if (this._ended) return;
      this._end();
      this.callbacks.onclose(code, reason, false);
    }

    /** One envelope as JSON text from the downstream. */
    _receiveText(text) {
      let envelope;
      try {
        envelope = JSON.parse(text);
      } catch (error) {
        this._fail(4100, 'the server sent an envelope that is not JSON');
        return;
      }
      this._receive(envelope);
    }

    _receive(envelope) {
      if (this._ended) return;
      if (envelope === null || typeof envelope !== 'object' || typeof envelope.type !== 'string') {
        this._fail(4100, 'envelope without a string "type"');
        return;
      }
      if (envelope.type === 'close') {
        if (this._closing) {
          this._finishClose(); // the server's answer to our close
          return;
        }
        const code = Number(envelope.code) || 1006;
        const reason = String(envelope.reason || '');
        if (this._recycle(code)) return;
        this._end();
        this.callbacks.onclose(code, reason, true);
        return;
      }
      if (envelope.type === 'welcome') {
        this.session = envelope.session;
        this._welcomed = true;
        this._lastSeq = 0;
        this.callbacks.onenvelope(envelope, null);
        this._post();
        return;
      }
      if (envelope.type === 'message' && typeof envelope.seq === 'number' && typeof envelope.channel !== 'string') {
        this._lastSeq = Math.max(this._lastSeq, envelope.seq);
      }
      this.callbacks.onenvelope(envelope, null);
    }

    /** Whether a server close with `code` is a recycle this transport handles. */
    _recycle(code) {
      return false;
    }

    /** Open the downstream request with `hello`. @param {Object} hello */
    _openDownstream(hello) {
      throw new Error('not implemented');
    }

    /** Stop the downstream request; no callback follows. */
    _stopDownstream() {}
  }

  /** `sse`: an `EventSource` on `E/sse?hello=…`, one envelope an event. */
  class SseTransport extends HttpTransport {
    constructor(url, callbacks, options) {
      super('sse', url, callbacks, options);
      /** @type {EventSource|null} */
      this._source = null;
    }

    _openDownstream(hello) {
      this._stopDownstream();
      const source = new EventSource(
        httpUrl(this.url, 'sse', { hello: JSON.stringify(hello) }),
        { withCredentials: this.crossOrigin }
      );
      this._source = source;
      source.onmessage = (event) => {
        if (source === this._source) this._receiveText(event.data);
      };
      source.onerror = () => {
        // EventSource would reconnect by itself with the same URL, that is with the first
        // hello: a new session. The core resumes this one instead.
        if (source === this._source) this._fail(1006, 'event stream failed');
      };
    }

    _stopDownstream() {
      const source = this._source;
      this._source = null;
      if (!source) return;
      source.onmessage = source.onerror = null;
      source.close();
    }
  }

  /** `stream`: a `fetch` on `E/stream?hello=…` read as it arrives, one envelope a line. */
  class StreamTransport extends HttpTransport {
    constructor(url, callbacks, options) {
      super('stream', url, callbacks, options);
      /** @type {AbortController|null} */
      this._download = null;
    }

    _openDownstream(hello) {
      this._stopDownstream();
      const controller = new AbortController();
      this._download = controller;
      const current = () => controller === this._download && !this._ended;
      fetch(httpUrl(this.url, 'stream', { hello: JSON.stringify(hello) }), {
        credentials: 'include',
        cache: 'no-store',
        signal: controller.signal,
      }).then(async (response) => {
        if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
        const reader = response.body.getReader();
        const text = new TextDecoder();
        let partial = '';
        for (;;) {
          const { done, value } = await reader.read();
          if (!current()) return;
          if (done) throw new Error('the stream ended');
          const lines = (partial + text.decode(value, { stream: true })).split('\n');
          partial = lines.pop();
          for (const line of lines) {
            if (line.trim() === '') continue; // a heartbeat
            this._receiveText(line);
            if (!current()) return;
          }
        }
      }).catch((error) => {
        if (current()) this._fail(1006, `stream failed: ${error && error.message}`);
      });
    }

    _stopDownstream() {
      const controller = this._download;
      this._download = null;
      if (controller) controller.abort();
    }
  }

  /**
   * `iframe`: the forever frame. A hidden iframe on `E/iframe?hello=…&origin=<our origin>`
   * posts each envelope to this window; only messages from that frame's window and the
   * server's origin count. When the server ends the document (close 4000, "stream
   * recycled") the core resumes the session in a new iframe without telling the app.
   */
  class IframeTransport extends HttpTransport {
    constructor(url, callbacks, options) {
      super('iframe', url, callbacks, options);
      /** @type {HTMLIFrameElement|null} */
      this._frame = null;
      this._listener = null;
      this._endTimer = null;
    }

    open() {
      if (typeof document === 'undefined' || pageOrigin() === null) {
        throw new Error('the iframe transport needs a page with an origin');
      }
      super.open();
    }

    _openDownstream(hello) {
      this._stopDownstream();
      const frame = document.createElement('iframe');
      frame.setAttribute('aria-hidden', 'true');
      frame.tabIndex = -1;
      frame.style.cssText = 'position:absolute;width:0;height:0;border:0;visibility:hidden';
      this._frame = frame;
      this._listener = (event) => {
        if (frame !== this._frame || event.source !== frame.contentWindow) return;
        if (event.origin !== this.serverOrigin) return;
        const data = event.data;
        if (data === null || typeof data !== 'object' || !('pushwire' in data)) return;
        this._receive(data.pushwire);
      };
      window.addEventListener('message', this._listener);
      frame.addEventListener('load', () => {
        // The document ended (or never started: an error page) without a close envelope.
        if (frame !== this._frame || this._endTimer !== null) return;
        this._endTimer = setTimeout(() => {
          this._endTimer = null;
          if (frame === this._frame) this._fail(1006, 'the iframe stream ended');
        }, IFRAME_END_GRACE_MS);
      });
      frame.src = httpUrl(this.url, 'iframe', { hello: JSON.stringify(hello), origin: pageOrigin() });
      (document.body || document.documentElement).appendChild(frame);
    }

    _recycle(code) {
      if (code !== 4000 || typeof this.callbacks.onrecycle !== 'function') return false;
      this._stopDownstream();
      this._welcomed = false;
      this.callbacks.onrecycle(); // the core sends hello again: a new iframe
      return true;
    }

    _stopDownstream() {
      clearTimeout(this._endTimer);
      this._endTimer = null;
      const frame = this._frame;
      this._frame = null;
      if (this._listener) window.removeEventListener('message', this._listener);
      this._listener = null;
      if (frame) frame.remove();
    }
  }

  /**
   * `longpoll` and `polling`: `GET E/<name>?hello=…`, then `?session=S&cursor=C` where C,
   * from the last `Pushwire-Cursor`, acknowledges what arrived (the server sends again what
   * is not acknowledged), and `seq=N` the direct messages. `longpoll` asks again at once
   * (the server holds the request), `polling` after `options.pollInterval`. A poll refused
   * with 410 or 409 is a dropped connection: the core resumes or reopens the session. A
   * poll answered 503 (the node holding the session did not answer in time) is asked again
   * with the same cursor, after 100 ms doubling up to 2 s, at most POLL_RETRIES times.
   */
  class PollTransport extends HttpTransport {
    constructor(name, url, callbacks, options) {
      super(name, url, callbacks, options);
      /** @type {AbortController|null} */
      this._download = null;
      this._pollTimer = null;
      this._cursor = null;
      this._polledSeq = 0; // direct messages acknowledged on a poll
      this._retries = 0; // 503 answers in a row
    }

    send(envelope, bytes) {
      // Acknowledged by a poll already: no POST needed.
      if (envelope.type === 'ack' && envelope.seq <= this._polledSeq) return;
      super.send(envelope, bytes);
    }

    _openDownstream(hello) {
      this._stopDownstream();
      this._cursor = null;
      this._polledSeq = 0;
      this._poll({ hello: JSON.stringify(hello) });
    }

    _poll(params) {
      const controller = new AbortController();
      this._download = controller;
      const current = () => controller === this._download && !this._ended;
      fetch(httpUrl(this.url, this.name, params), {
        credentials: 'include',
        cache: 'no-store',
        signal: controller.signal,
      }).then(async (response) => {
        if (!current()) return;
        if (response.status === 410 || response.status === 409) {
          // session_unknown / not_connected: send hello again.
          this._fail(1006, `poll refused: HTTP ${response.status}`);
          return;
        }
        if (response.status === 503 && !params.hello && this._retries < POLL_RETRIES) {
          // Retryable: the server keeps what this cursor has not acknowledged.
          const delay = Math.min(100 * 2 ** this._retries, 2000);
          this._retries += 1;
          this._pollTimer = setTimeout(() => {
            if (current()) this._poll(params);
          }, delay);
          return;
        }
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        this._retries = 0;
        const cursor = response.headers.get('Pushwire-Cursor');
        const body = await response.text();
        if (!current()) return;
        const lines = body.split('\n').filter((line) => line.trim() !== '');
        if (this.session !== null && lines.length > 0 && this._superseded(lines[lines.length - 1])) {
          // This client never runs two connections of one session, so a 4004 is the end
          // of its own previous connection (superseded by this one's hello), which the
          // server keeps for "the" next poll of the session. Neither those frames nor
          // their cursor belong to this connection: skip them and ask again.
          this._schedulePoll(controller);
          return;
        }
        if (cursor !== null) this._cursor = cursor;
        for (const line of lines) {
          this._receiveText(line);
          if (!current()) return;
        }
        this._schedulePoll(controller);
      }).catch((error) => {
        if (current()) this._fail(1006, `poll failed: ${error && error.message}`);
      });
    }

    /** Whether `line` is a close envelope with 4004 (the session resumed elsewhere). */
    _superseded(line) {
      try {
        const envelope = JSON.parse(line);
        return envelope !== null && envelope.type === 'close' && envelope.code === 4004;
      } catch (error) {
        return false; // _receiveText reports it
      }
    }

    _schedulePoll(controller) {
      if (!this.session) {
        this._fail(1006, 'no welcome in the first poll');
        return;
      }
      const next = () => {
        if (controller !== this._download || this._ended) return;
        const params = { session: this.session };
        if (this._cursor !== null) params.cursor = this._cursor;
        if (this._lastSeq > this._polledSeq) {
          this._polledSeq = this._lastSeq;
          params.seq = String(this._lastSeq);
        }
        this._poll(params);
      };
      if (this.name === 'longpoll') {
        next();
      } else {
        const interval = Number(this.options.pollInterval);
        this._pollTimer = setTimeout(next, Number.isFinite(interval) && interval >= 0 ? interval : 1000);
      }
    }

    _stopDownstream() {
      clearTimeout(this._pollTimer);
      this._pollTimer = null;
      const controller = this._download;
      this._download = null;
      if (controller) controller.abort();
    }
  }

  class LongpollTransport extends PollTransport {
    constructor(url, callbacks, options) {
      super('longpoll', url, callbacks, options);
    }
  }

  class PollingTransport extends PollTransport {
    constructor(url, callbacks, options) {
      super('polling', url, callbacks, options);
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
   * @property {number} [pollInterval] `polling`: the wait between two polls, ms (default 1000)
   */

  const DEFAULTS = {
    user: null,
    token: null,
    transports: ['websocket', 'sse', 'stream', 'iframe', 'longpoll', 'polling'],
    reconnect: true,
    reconnectDelay: 500,
    reconnectDelayMax: 10000,
    connectTimeout: 10000,
    pollInterval: 1000,
  };

  const HANDLER_EVENTS = ['open', 'message', 'error', 'close'];

  /**
   * A pushwire connection that behaves like `WebSocket`.
   *
   * Events: `open`, `message` (MessageEvent with `channel`, `epoch`, `offset`, `seq`),
   * `error`, `close` (CloseEvent), and, for channels subscribed with `{presence: true}`,
   * `presence` (`channel`, `count`, `members`, `truncated`: whenever who is there changed),
   * `join` and `leave` (`channel`, `count`, `member`: `{member, user, info}`), `reconnecting`,
   * `reconnected`, `expired` (`session`: the old session was lost with its direct
   * messages), `gap` (`channel`, `from`, `to`: channel messages that cannot be recovered),
   * `servererror` (`code`, `message`: an `error` envelope that answers no request),
   * `transport` (`transport`, `previous`: the connection now runs on another transport).
   *
   * Transports are tried in `options.transports` order, each for at most `connectTimeout`;
   * one that fails before `welcome` passes the turn to the next. After a drop the client
   * starts again from the transport that worked last and goes round the list from there.
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
      this._transportName = null; // the transport of the last welcome
      this._lastWorking = 0; // index in options.transports of the transport that worked last
      this._live = false; // welcome received on the current transport
      this._recycling = false; // the transport is reopening its downstream (iframe recycle)
      this._attempt = { index: 0, tried: 0 }; // the transport being tried, and how many before it
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
      /** @type {Map<string, Object>} channel -> {presence, epoch, offset, waiters, members} */
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
     * Who is in a channel subscribed with `{presence: true}`, on every server node, as last
     * heard: `{channel, count, members: [{member, user, info}], truncated}`, or null before
     * the server said. `member` is a session's public id: one user with two tabs is listed
     * twice. `truncated`: more are in the channel (`count`) than the server lists.
     * @param {string} channel
     */
    presence(channel) {
      const state = this._channels.get(String(channel));
      if (!state || !state.members) return null;
      return {
        channel: String(channel), count: state.count,
        members: Array.from(state.members.values()), truncated: state.truncated,
      };
    }

    /**
     * Ask the server now who is in a channel this connection is subscribed to (with or
     * without presence).
     * @param {string} channel
     * @returns {Promise<{channel: string, count: number, members: Array, truncated: boolean}>}
     */
    fetchPresence(channel) {
      if (!this._live) {
        return Promise.reject(new DOMException('not connected', 'InvalidStateError'));
      }
      return this._request({ type: 'presence', channel: String(channel) }, { kind: 'presence' });
    }

    /**
     * Join a channel; its messages arrive as `message` events with `channel` set.
     * @param {string} channel
     * @param {{presence?: boolean}} [options] presence: also keep the channel's members
     *   (`presence(channel)`) and fire `presence`, `join` and `leave` events
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
          state = {
            presence, epoch: null, offset: null, waiters: [], members: null, count: 0, truncated: false,
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

    /** Connect, starting with the transport that worked last. */
    _connect() {
      const count = this._options.transports.length;
      this._tryTransport(count > 0 ? this._lastWorking % count : 0, 0);
    }

    /** The hello that opens (or resumes) the session. */
    _hello() {
      return {
        type: 'hello',
        user: this._options.user == null ? null : String(this._options.user),
        token: this._options.token == null ? null : String(this._options.token),
        session: this._session,
        ack: this._lastSeq,
      };
    }

    /**
     * Try `options.transports[index]`, the `tried`-th of this round; a failure before
     * welcome passes the turn to the next one, round the list, each once.
     */
    _tryTransport(index, tried) {
      const names = this._options.transports;
      if (tried >= names.length) {
        this._attemptFailed(1006, 'no usable transport', false);
        return;
      }
      const name = names[index];
      const Implementation = Object.prototype.hasOwnProperty.call(Pushwire.transports, name)
        ? Pushwire.transports[name] : null;
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
        onclose: (code, reason, wasClean) => {
          if (transport !== this._transport) return;
          this._transport = null;
          this._transportClosed(code, reason, wasClean);
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

    /** An attempt without welcome within connectTimeout is given up. */
    _armConnectTimer(transport) {
      clearTimeout(this._connectTimer);
      this._connectTimer = setTimeout(() => {
        if (transport !== this._transport || this._live) return;
        this._dropTransport();
        this._transportClosed(1006, 'connect timeout', false);
      }, this._options.connectTimeout);
    }

    /** The URL a transport is given; HTTP transports map it to their own paths. */
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

    _transportClosed(code, reason, wasClean) {
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
      const names = this._options.transports;
      const { index, tried } = this._attempt;
      this._tryTransport((index + 1) % names.length, tried + 1);
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
          this._transportClosed(1006, 'no answer to ping', false);
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
        case 'presence': return this._presenceSnapshot(envelope);
        case 'join':
        case 'leave': return this._presenceChange(envelope);
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
          return this._transportClosed(Number(envelope.code) || 1006, String(envelope.reason || ''), true);
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
      const silent = this._recycling;
      this._recycling = false;
      this._reconnectAttempt = 0;
      this._lastWorking = this._attempt.index;
      const previousTransport = this._transportName;
      this._transportName = this._options.transports[this._attempt.index];
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
      if (this._transportName !== previousTransport) {
        this.dispatchEvent(Object.assign(new Event('transport'), {
          transport: this._transportName, previous: previousTransport,
        }));
      }
      if (!reconnected) {
        this._everOpened = true;
        if (this._readyState === CONNECTING) this._readyState = OPEN;
        this.dispatchEvent(new Event('open'));
      } else if (!silent) {
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

    _presenceSnapshot(envelope) {
      const snapshot = {
        channel: envelope.channel, count: envelope.count,
        members: envelope.members || [], truncated: !!envelope.truncated,
      };
      if (envelope.id !== undefined) { // the answer to fetchPresence
        const request = this._requests.get(envelope.id);
        this._requests.delete(envelope.id);
        if (request) request.resolve(snapshot);
        return;
      }
      const state = this._channels.get(envelope.channel);
      if (!state) return;
      const before = state.members;
      state.members = new Map(snapshot.members.map((m) => [m.member, m]));
      state.count = snapshot.count;
      state.truncated = snapshot.truncated;
      if (before) {
        // A snapshot after a reconnection: what changed while away is news.
        for (const [id, member] of state.members) {
          if (!before.has(id)) this._presenceEvent('join', state, envelope.channel, member);
        }
        if (!snapshot.truncated) {
          for (const [id, member] of before) {
            if (!state.members.has(id)) this._presenceEvent('leave', state, envelope.channel, member);
          }
        }
      }
      this._presenceChanged(envelope.channel, state);
    }

    _presenceChange(envelope) {
      const state = this._channels.get(envelope.channel);
      if (!state || !state.members || !envelope.member) return;
      if (envelope.type === 'join') state.members.set(envelope.member.member, envelope.member);
      else state.members.delete(envelope.member.member);
      state.count = envelope.count;
      state.truncated = state.truncated && state.count > state.members.size;
      this._presenceEvent(envelope.type, state, envelope.channel, envelope.member);
      this._presenceChanged(envelope.channel, state);
    }

    _presenceEvent(type, state, channel, member) {
      this.dispatchEvent(Object.assign(new Event(type), { channel, count: state.count, member }));
    }

    _presenceChanged(channel, state) {
      this.dispatchEvent(Object.assign(new Event('presence'), this.presence(channel)));
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

  root.Pushwire = Pushwire;
  if (typeof module !== 'undefined' && module.exports) module.exports = Pushwire;
})(typeof globalThis !== 'undefined' ? globalThis : this);
