import { httpUrl } from '../urls.js';
import { HttpTransport } from './http.js';

/**
 * `stream`: a `fetch` of `POST E/stream`, the hello as its body, read as it arrives, one
 * envelope a line.
 */
export class StreamTransport extends HttpTransport {
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
    fetch(httpUrl(this.url, 'stream', {}), {
      method: 'POST',
      // text/plain: a "simple" request, so a cross-origin opening needs no preflight.
      headers: { 'Content-Type': 'text/plain;charset=UTF-8' },
      body: JSON.stringify(hello),
      credentials: 'include',
      cache: 'no-store',
      signal: controller.signal,
    }).then(async (response) => {
      if (!response.ok && current() && this._backOff(response, 'stream')) return;
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      const reader = response.body.getReader();
      const text = new TextDecoder();
      let partial = '';
      for (;;) {
        const { done, value } = await reader.read();
        if (!current()) return;
        if (done) throw new Error('the stream ended');
        const lines = (partial + text.decode(value, { stream: true })).split('\n');
        // @ts-expect-error: split gives one string at least, so pop gives one
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
