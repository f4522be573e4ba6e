/** Protocol constants shared by the transports and the connection (docs/protocol.md). */

export const SUBPROTOCOL = 'pushwire.v1';

// readyState values, as WebSocket has them.
export const CONNECTING = 0;
export const OPEN = 1;
export const CLOSING = 2;
export const CLOSED = 3;

// The close code of a connection whose token expired (docs/security.md): come back with a
// new token (options.getToken), or stop.
export const TOKEN_EXPIRED = 4005;

// A binary envelope is its JSON header, this byte, then the raw bytes.
export const NEWLINE = 0x0a;
