import { httpUrl, pageOrigin } from '../urls.js';
import { HttpTransport } from './http.js';

// An iframe whose document ended (`load`) is taken for dropped after this long without the
// `close` envelope: an iframe on another site lives in another process, whose `load` event
// and last postMessage may arrive in either order. (A response cut mid-body fires no
// `load` in Chromium: that drop is found by the core's pings.)
const IFRAME_END_GRACE_MS = 250;

/**
 * `iframe`: the forever frame. A hidden iframe on `E/iframe?hello=…&origin=<our origin>`
 * posts each envelope to this window; only messages from that frame's window and the
 * server's origin count. When the server ends the document (close 4000, "stream
 * recycled") the core resumes the session in a new iframe without telling the app. A
 * frame's document comes from its URL: the hello (its token, and the resume secret when
 * resuming) is in it; the requests that follow carry the session in a header.
 */
export class IframeTransport extends HttpTransport {
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
    // @ts-expect-error: pageOrigin() is not null here, open() made sure
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
