/**
 * @typedef {Object} PushwireOptions
 * @property {{epoch: string, offset: number}} [inboxSince] the last direct message the user had
 *   (`inboxPosition` of an earlier client): the server sends what followed it, or a `gap`
 * @property {string|null} [user] the user id claimed in `hello`
 * @property {string|null} [token] the first connection token (a JWT, or a credential for the
 *   server's connect handler)
 * @property {() => Promise<string>} [getToken] gives a new token: called before the token
 *   expires (about 80% into the time it had left, at least 1 s before) to refresh it without
 *   reconnecting, and after it expired (close 4005) to come back with a new one. Without it,
 *   an expired token ends the connection (`close` with code 4005)
 * @property {string[]} [transports] transport names, tried in this order
 * @property {boolean} [reconnect] come back after a drop (default true)
 * @property {number} [reconnectDelay] backoff base, ms (default 500)
 * @property {number} [reconnectDelayMax] backoff bound, ms (default 10000)
 * @property {number} [connectTimeout] an attempt without `welcome` after this is given up, ms
 * @property {number} [pollInterval] `polling`: the wait between two polls, ms (default 1000)
 * @property {number} [pollMargin] `longpoll`, `polling`: a poll not answered this long after
 *   the hold the welcome announced (`longpoll_timeout`; 0 for `polling`) is abandoned and the
 *   connection resumed, ms (default 10000)
 * @property {number} [sendTimeout] HTTP transports: an upload (`POST E/send`) not answered
 *   within this, plus the time its body takes at 16 KiB/s (the server's default
 *   min_receive_rate), is abandoned and the connection resumed, ms (default 10000)
 * @property {{attempts?: number, delay?: number, delayMax?: number}} [retry] how a
 *   re-subscription or publish that failed with `unavailable` (or a drop, for a publish) is
 *   retried: `attempts` in all (default 8), attempt n+1 after a random wait up to
 *   min(delayMax, delay * 2^(n-1)) ms (defaults 500, 10000); then given up: the promise
 *   rejects, and a re-subscription nobody awaits fires `error`
 */

/**
 * The options in force: DEFAULTS, then what the application gave.
 * @typedef {Object} ResolvedOptions
 * @property {{epoch: string, offset: number}|null} [inboxSince]
 * @property {string|null} user
 * @property {string|null} token
 * @property {(() => Promise<string>)|null} getToken
 * @property {string[]} transports
 * @property {boolean} reconnect
 * @property {number} reconnectDelay
 * @property {number} reconnectDelayMax
 * @property {number} connectTimeout
 * @property {number} pollInterval
 * @property {number} pollMargin
 * @property {number} sendTimeout
 * @property {{attempts?: number, delay?: number, delayMax?: number}} retry
 */

/** @type {ResolvedOptions} */
export const DEFAULTS = {
  user: null,
  token: null,
  getToken: null,
  transports: ['websocket', 'sse', 'stream', 'iframe', 'longpoll', 'polling'],
  reconnect: true,
  reconnectDelay: 500,
  reconnectDelayMax: 10000,
  connectTimeout: 10000,
  pollInterval: 1000,
  pollMargin: 10000,
  sendTimeout: 10000,
  retry: { attempts: 8, delay: 500, delayMax: 10000 },
};
