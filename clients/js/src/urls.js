/** The endpoint's URL as the client is given it, and as each transport asks for it. */

/**
 * `url` made absolute, with http(s) mapped to ws(s), as `new WebSocket(url)` does.
 * @param {string} url
 * @returns {string}
 */
export function resolveUrl(url) {
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

/**
 * `url` (ws/wss/http/https) as http(s), with `/suffix` added to its path and `params` to
 * its query: the URLs of the HTTP transports of an endpoint (docs/protocol.md).
 * @param {string} url @param {string} suffix @param {Object<string, string>} params
 */
export function httpUrl(url, suffix, params) {
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
export function pageOrigin() {
  return typeof location !== 'undefined' && location.origin && location.origin !== 'null'
    ? location.origin : null;
}
