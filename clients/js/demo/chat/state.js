/** What the page knows: the nickname, the rooms, the connection, what arrived in each room. */
import { DEFAULT_ROOM } from './constants.js';

export const state = {
  nick: null,
  room: DEFAULT_ROOM,
  rooms: [DEFAULT_ROOM],
  transport: 'auto',
  /** @type {Pushwire|null} */
  pw: null,
  opened: false,
  /** room -> records seen while this page is open */
  history: new Map(),
  /** "room|epoch:offset" of messages this page published */
  own: new Set(),
  /** room -> file notes waiting for their bytes */
  pendingFiles: new Map(),
  online: null,
};

// -- storage (a browser may refuse it: the page still works, it just forgets) ---------------

export function load(key) {
  try { return window.localStorage.getItem(key); } catch (error) { return null; }
}

export function save(key, value) {
  try { window.localStorage.setItem(key, value); } catch (error) { /* private mode */ }
}

export function roomHistory(room) {
  if (!state.history.has(room)) state.history.set(room, []);
  return state.history.get(room);
}
