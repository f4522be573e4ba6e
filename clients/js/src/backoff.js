/**
 * The server's word on backing off (docs/protocol.md, "Per-client limits"): HTTP 429, 503
 * with `Retry-After`, an `error` `limit` or `rate_limited` with its `retry_after`, close
 * 4029. The client waits at least what it said, at most MAX_SERVER_BACKOFF seconds.
 */

/** The close code of a client over a rate or a bound: come back after a backoff. */
export const LIMITED = 4029;
/** The longest the server's word makes the client wait, seconds. */
export const MAX_SERVER_BACKOFF = 60;
/** What a 4029 or a 429 that says no time makes the client wait at least, seconds. */
export const LIMITED_BACKOFF = 1;

/**
 * The seconds an HTTP `Retry-After` (a string) or an `error`'s `retry_after` (a number)
 * asks for, at most MAX_SERVER_BACKOFF; null when absent or not a delay: delta-seconds only
 * (1 to 10 ASCII digits; an HTTP-date, a sign, a fraction or anything else is ignored), or
 * a finite number from 0.
 * @param {unknown} value
 * @returns {number|null}
 */
export function parseRetryAfter(value) {
  if (typeof value === 'number') {
    return Number.isFinite(value) && value >= 0 ? Math.min(value, MAX_SERVER_BACKOFF) : null;
  }
  if (typeof value !== 'string') return null;
  const text = value.replace(/^[ \t]+|[ \t]+$/g, '');
  if (!/^[0-9]{1,10}$/.test(text)) return null;
  return Math.min(Number(text), MAX_SERVER_BACKOFF);
}

/**
 * How long an HTTP answer refusing a connection says to back off, seconds: a 429 (at
 * least LIMITED_BACKOFF without a readable Retry-After), a 503 with a Retry-After; null
 * for any other answer.
 * @param {number} status
 * @param {string|null} retryAfter the header's value
 * @returns {number|null}
 */
export function refusalWait(status, retryAfter) {
  const wait = parseRetryAfter(retryAfter);
  if (status === 429) return wait === null ? LIMITED_BACKOFF : wait;
  if (status === 503 && wait !== null) return wait;
  return null;
}
