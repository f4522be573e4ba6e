import { LIMITED, refusalWait } from '../backoff.js';
import { toBase64, utf8Length } from '../bytes.js';
import { httpUrl, pageOrigin } from '../urls.js';

/** @typedef {import('./index.js').Transport} Transport */
/** @typedef {import('./index.js').TransportCallbacks} TransportCallbacks */

// A POST body stays under this (the server's max_body_bytes is 1 MiB) unless one envelope
// alone is larger.
const MAX_POST_BYTES = 256 * 1024;
// A POST refused with 409/410 waits this long for the downstream to say why.
const STALL_MS = 2000;

/**
 * `value` when it is a number of ms at least 0, else `fallback`.
 * @param {unknown} value @param {number} fallback
 */
export function milliseconds(value, fallback) {
  const number = Number(value);
  return value != null && Number.isFinite(number) && number >= 0 ? number : fallback;
}

/**
 * What every HTTP transport shares (docs/protocol.md, "The HTTP transports"): `hello`
 * opens the downstream (in the subclass: the body of `POST E/<name>` where fetch can send
 * one, `E/<name>?hello=…` where only a URL can be given), every later envelope goes up in
 * `POST E/send`, one a line, batched per event-loop turn, one POST at a time so that order
 * is kept. The session id and its resume secret come from the welcome; requests name the
 * session with them in the `Pushwire-Session` header, never in the URL. A `close` envelope
 * from the server ends the connection with its code.
 * @implements {Transport}
 */
export class HttpTransport {
  /**
   * @param {string} name the transport, also the path suffix of its downstream
   * @param {string} url the endpoint (any scheme; mapped to http(s))
   * @param {TransportCallbacks} callbacks
   * @param {Object} [options] the Pushwire options (pollInterval, pollMargin, sendTimeout)
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
    this.secret = null; // the session's resume secret
    this._welcomed = false; // the current downstream delivered its welcome: POSTs may go
    this._generation = 0; // counts downstreams; a POST remembers the one it was sent under
    this._ended = false;
    /** @type {any} {code, reason} once close() was called */
    this._closing = null;
    this._outgoing = []; // {line, size}
    this._outgoingBytes = 0;
    this._inFlight = null; // {lines, size, generation, controller}
    this._postScheduled = false;
    this._stalled = -1; // the generation whose POSTs the server refused (409/410)
    /** @type {any} a timer: `clearTimeout(null)` is allowed */
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
    // An upload whose answer never comes (its link frozen where neither end sees it) would
    // hold every envelope behind it, pings included, for good: past `sendTimeout` it is
    // abandoned as a cut one is, a lost connection. The core resumes the session and sends
    // its unanswered publishes again with their idempotency keys (published once); data
    // from send() is not sent again, it may have arrived (as over a WebSocket that dropped).
    // A large upload on a slow uplink gets the time its size takes at 16 KiB/s besides (the
    // server's default min_receive_rate: the slowest upload it still takes).
    const timeout = milliseconds(this.options.sendTimeout, 10000) + Math.ceil(size / 16.384);
    const deadline = setTimeout(() => {
      if (post === this._inFlight) this._fail(1006, `send not answered within ${timeout} ms`);
    }, timeout);
    fetch(httpUrl(this.url, 'send', {}), {
      method: 'POST',
      headers: this._sessionHeaders({ 'Content-Type': 'text/plain;charset=UTF-8' }),
      body: lines.map((item) => item.line).join('\n'),
      credentials: 'include',
      cache: 'no-store',
      signal: controller.signal,
    }).then((response) => {
      clearTimeout(deadline);
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
      if (this._backOff(response, 'send')) return;
      if (response.status === 413) this._fail(1009, 'message too big for the server');
      else if (response.status === 400) this._fail(4100, 'the server refused an envelope');
      else this._fail(1006, `send failed: HTTP ${response.status}`);
    }, (error) => {
      clearTimeout(deadline);
      if (post !== this._inFlight) return;
      this._inFlight = null;
      this._fail(1006, `send failed: ${error && error.message}`);
    });
  }

  /**
   * `headers` and the one naming this session and proving it ours (a cross-origin request
   * with it is preflighted once; the server's answer is cached).
   * @param {Object<string, string>} headers
   */
  _sessionHeaders(headers) {
    return Object.assign(headers, { 'Pushwire-Session': `${this.session} ${this.secret}` });
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

  /**
   * The connection failed: no clean close (`retryAfter`: the server said to back off).
   * @param {number} code @param {string} reason @param {number} [retryAfter]
   */
  _fail(code, reason, retryAfter) {
    if (this._ended) return;
    this._end();
    this.callbacks.onclose(code, reason, false, retryAfter);
  }

  /**
   * Whether `response` says to back off (429; 503 with Retry-After, readable across origins
   * as the server exposes it): then the connection failed with 4029 and the wait.
   * @param {Response} response @param {string} what
   */
  _backOff(response, what) {
    const wait = refusalWait(response.status, response.headers.get('Retry-After'));
    if (wait === null) return false;
    this._fail(LIMITED, `${what}: HTTP ${response.status}`, wait);
    return true;
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
      this.secret = typeof envelope.resume === 'string' ? envelope.resume : null;
      this._learnHold(envelope);
      this._welcomed = true;
      this.callbacks.onenvelope(envelope, null);
      this._post();
      return;
    }
    this.callbacks.onenvelope(envelope, null);
  }

  /** What the welcome says of how the server holds this transport's requests. */
  _learnHold(welcome) {}

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
