/** @typedef {import('./pushwire.js').Pushwire} Pushwire */

/**
 * Pushwire's presence: who is in the channels subscribed with `{presence: true}`, kept
 * from the server's snapshots and join/leave envelopes, and the events that tell the app.
 * Mixed into `Pushwire.prototype` (pushwire.js): `this` is the Pushwire.
 */
export class Presence {
  /**
   * Who is in a channel subscribed with `{presence: true}`, on every server node, as last
   * heard: `{channel, count, members: [{member, user, info}], truncated}`, or null before
   * the server said. `member` is a session's public id: one user with two tabs is listed
   * twice. `truncated`: more are in the channel (`count`) than the server lists.
   * @param {string} channel
   * @this {Pushwire}
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
   * @this {Pushwire}
   */
  fetchPresence(channel) {
    if (!this._live) {
      return Promise.reject(new DOMException('not connected', 'InvalidStateError'));
    }
    return this._request({ type: 'presence', channel: String(channel) }, { kind: 'presence' });
  }

  /** @this {Pushwire} */
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

  /** @this {Pushwire} */
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

  /** @this {Pushwire} */
  _presenceEvent(type, state, channel, member) {
    this.dispatchEvent(Object.assign(new Event(type), { channel, count: state.count, member }));
  }

  /** @this {Pushwire} */
  _presenceChanged(channel, state) {
    this.dispatchEvent(Object.assign(new Event('presence'), this.presence(channel)));
  }
}
