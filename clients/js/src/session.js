import { CONNECTING, OPEN, SUBPROTOCOL } from './constants.js';

/** @typedef {import('./pushwire.js').Pushwire} Pushwire */

/**
 * Pushwire's session: the hello that opens or resumes it, the welcome that says which,
 * and the heartbeat that finds a connection dead when the server falls silent.
 * Mixed into `Pushwire.prototype` (pushwire.js): `this` is the Pushwire.
 */
export class Session {
  /**
   * The hello that opens (or resumes) the session.
   * @this {Pushwire}
   */
  _hello() {
    return {
      type: 'hello',
      user: this._options.user == null ? null : String(this._options.user),
      token: this._token, // options.token, or the latest from getToken
      session: this._session,
      resume: this._resume, // the session's secret: the id alone resumes nothing
      // The last direct message the client has: the server sends what followed it.
      inbox: this._inbox,
    };
  }

  /** @this {Pushwire} */
  _welcome(envelope) {
    clearTimeout(this._connectTimer);
    this._connectTimer = null;
    const previous = this._session;
    this._session = envelope.session;
    this._resume = typeof envelope.resume === 'string' ? envelope.resume : null;
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
    this._planRefresh(envelope.expires);
    // Where the user's direct messages stand: a client without a position starts there.
    const inbox = envelope.inbox;
    if (this._inbox === null && inbox && typeof inbox.epoch === 'string') {
      /** @type {{epoch: string, offset: number}|null} */
      this._inbox = { epoch: inbox.epoch, offset: inbox.offset };
    }
    const reconnected = this._everOpened;
    if (envelope.expired !== undefined || (previous !== null && !envelope.resumed)) {
      // A new session; the user's direct messages come from its inbox all the same.
      this.dispatchEvent(Object.assign(new Event('expired'), { session: previous }));
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

  /**
   * The browser cannot see the server's WebSocket pings, and a connection that died
   * without a FIN or RST (a sleeping laptop, a proxy that lost it) looks open for minutes.
   * So: after `heartbeat` seconds without an envelope, send `ping`; after two such periods
   * of silence, take the connection for dead (1006) and reconnect.
   * @param {number} seconds the server's heartbeat, from welcome
   * @this {Pushwire}
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

  /** @this {Pushwire} */
  _stopHeartbeat() {
    clearInterval(this._heartbeatTimer);
    this._heartbeatTimer = null;
  }
}
