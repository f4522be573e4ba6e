import { httpUrl } from '../urls.js';
import { HttpTransport } from './http.js';

/**
 * `sse`: an `EventSource` on `E/sse?hello=…`, one envelope an event. EventSource sends no
 * body and no header of ours, so the hello (its token, and the resume secret when resuming)
 * is in this one URL; the requests that follow carry the session in a header.
 */
export class SseTransport extends HttpTransport {
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
