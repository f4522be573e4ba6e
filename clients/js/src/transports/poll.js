import { httpUrl } from '../urls.js';
import { HttpTransport, milliseconds } from './http.js';

// A poll answered 503 is asked again this many times (backoff 100 ms doubling to 2 s).
const POLL_RETRIES = 6;
// How long a `longpoll` poll is held, s, when the welcome does not say (a server before
// `longpoll_timeout` was announced): that server's default.
const ASSUMED_HOLD = 25;

/**
 * `longpoll` and `polling`: `POST E/<name>` with the hello as its body, then
 * `GET E/<name>?cursor=C` with the `Pushwire-Session` header, where C, from the last
 * `Pushwire-Cursor`, acknowledges what arrived (the server sends again what is not
 * acknowledged). `longpoll` asks again at once
 * (the server holds the request), `polling` after `options.pollInterval`. A poll refused
 * with 410 or 409 is a dropped connection: the core resumes or reopens the session. A
 * poll answered 503 (the node holding the session did not answer in time) is asked again
 * with the same cursor, after 100 ms doubling up to 2 s, at most POLL_RETRIES times.
 *
 * Deadline: a poll not answered (head and body) `options.pollMargin` after the hold the
 * welcome announced (`longpoll_timeout`; 0 for `polling`) is abandoned and counts as a lost
 * connection (its link frozen where neither end sees it, a proxy holding it): the core
 * resumes the session from its positions, so what that poll carried comes again, and what
 * comes twice is dropped by offset. The opening poll is bounded by `connectTimeout`.
 */
export class PollTransport extends HttpTransport {
  constructor(name, url, callbacks, options) {
    super(name, url, callbacks, options);
    /** @type {AbortController|null} */
    this._download = null;
    /** @type {any} a timer: `clearTimeout(null)` is allowed */
    this._pollTimer = null;
    this._cursor = null;
    this._retries = 0; // 503 answers in a row
    this._hold = name === 'longpoll' ? ASSUMED_HOLD : 0; // s a poll is held (the welcome's)
  }

  _learnHold(welcome) {
    if (this.name !== 'longpoll') return;
    const hold = Number(welcome.longpoll_timeout);
    this._hold = welcome.longpoll_timeout != null && Number.isFinite(hold) && hold >= 0 ? hold : ASSUMED_HOLD;
  }

  _openDownstream(hello) {
    this._stopDownstream();
    this._cursor = null;
    this._poll({}, JSON.stringify(hello));
  }

  /**
   * One poll, or with `hello` the POST that opens the session.
   * @param {Object<string, string>} params @param {string|null} [hello]
   */
  _poll(params, hello = null) {
    const controller = new AbortController();
    this._download = controller;
    const current = () => controller === this._download && !this._ended;
    /** @type {any} a timer: `clearTimeout(null)` is allowed */
    let deadline = null;
    /** @type {RequestInit} */
    const request = { credentials: 'include', cache: 'no-store', signal: controller.signal };
    if (hello !== null) {
      // text/plain: a "simple" request, so a cross-origin opening needs no preflight.
      Object.assign(request, {
        method: 'POST', body: hello, headers: { 'Content-Type': 'text/plain;charset=UTF-8' },
      });
    } else {
      request.headers = this._sessionHeaders({});
      const wait = this._hold * 1000 + milliseconds(this.options.pollMargin, 10000);
      deadline = setTimeout(() => {
        if (current()) this._fail(1006, `poll not answered within ${wait} ms`);
      }, wait);
    }
    fetch(httpUrl(this.url, this.name, params), request).then(async (response) => {
      if (!current()) return;
      if (response.status === 410 || response.status === 409) {
        // session_unknown / not_connected: send hello again.
        this._fail(1006, `poll refused: HTTP ${response.status}`);
        return;
      }
      // 429, 503 with Retry-After: back off (the core comes back after the wait).
      if (this._backOff(response, this.name)) return;
      if (response.status === 503 && hello === null && this._retries < POLL_RETRIES) {
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
    }).finally(() => clearTimeout(deadline)); // answered, read and handled, or failed
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
      /** @type {Object<string, string>} */
      const params = {};
      if (this._cursor !== null) params.cursor = this._cursor;
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
