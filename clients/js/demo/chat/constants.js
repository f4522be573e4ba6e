/** The chat page's fixed choices: the endpoint, the default room, names and bounds. */

export const ENDPOINT = '/pushwire';
export const DEFAULT_ROOM = 'lobby';
// The server's channel alphabet (docs/protocol.md); the demo keeps names short.
export const ROOM_NAME = /^[A-Za-z0-9_\-.:@#]{1,64}$/;
export const MAX_NICK = 32;
export const MAX_TEXT = 2000;
export const MAX_FILE = 256 * 1024;
export const MAX_ROOMS = 12;
export const GROUP_WINDOW_MS = 3 * 60 * 1000;
export const MAX_HISTORY = 500; // records kept per room; older ones leave the page
// Messages of the room's past shown on joining it and on reload (from the server's history).
export const HISTORY_ON_JOIN = 50;
export const TRANSPORTS = ['auto', 'websocket', 'sse', 'stream', 'iframe', 'longpoll', 'polling'];
export const KEYS = {
  nick: 'pushwire.chat.nick',
  room: 'pushwire.chat.room',
  rooms: 'pushwire.chat.rooms',
  transport: 'pushwire.chat.transport',
};
export const URL_PATTERN = /\bhttps?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]]/g;
