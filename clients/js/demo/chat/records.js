/** What arrives in a room, kept in order: messages, files (note then bytes), notices. */
import { MAX_HISTORY, MAX_NICK, MAX_TEXT } from './constants.js';
import { ui } from './dom.js';
import { sniffImage } from './format.js';
import { nearBottom, renderRecord, renderRoom, scrollToBottom } from './messages.js';
import { roomHistory, state } from './state.js';

export function receive(event) {
  const room = event.channel;
  if (room === null) {
    // A direct message to this session from the app.
    if (typeof event.data === 'string') addNotice(state.room, `Direct message: ${event.data}`);
    return;
  }
  const key = `${event.epoch}:${event.offset}`;
  let record;
  if (typeof event.data === 'string') {
    record = textRecord(room, event.data);
    if (record === null) return; // a file note: it waits for its bytes
  } else {
    record = binaryRecord(room, new Uint8Array(event.data));
  }
  const history = roomHistory(room);
  if (history.some((item) => item.key === key)) return; // shown already
  record.key = key;
  // Sent from this page, or (the room's past, after a reload) under this page's nickname.
  record.own = state.own.has(`${room}|${key}`) || (record.nick !== null && record.nick === state.nick);
  addRecord(room, record);
}

export function textRecord(room, data) {
  let value = null;
  try { value = JSON.parse(data); } catch (error) { /* plain text, e.g. from the HTTP API */ }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return { kind: 'text', nick: null, text: data.slice(0, MAX_TEXT * 2), ts: Date.now() };
  }
  const nick = typeof value.nick === 'string' ? value.nick.slice(0, MAX_NICK) : null;
  const ts = typeof value.ts === 'number' && Number.isFinite(value.ts) ? value.ts : Date.now();
  if (value.file && typeof value.file === 'object' && typeof value.text !== 'string') {
    const size = Number(value.file.size);
    if (Number.isInteger(size) && size >= 0) {
      const name = typeof value.file.name === 'string' ? value.file.name.slice(0, 120) : null;
      if (!state.pendingFiles.has(room)) state.pendingFiles.set(room, []);
      const pending = state.pendingFiles.get(room);
      pending.push({ nick, ts, name, size });
      if (pending.length > 20) pending.shift();
      return null;
    }
  }
  const text = typeof value.text === 'string' ? value.text : data;
  return { kind: 'text', nick, text: text.slice(0, MAX_TEXT * 2), ts };
}

export function binaryRecord(room, bytes) {
  const pending = state.pendingFiles.get(room) || [];
  const index = pending.findIndex((note) => note.size === bytes.length);
  const note = index >= 0 ? pending.splice(index, 1)[0] : null;
  const mime = sniffImage(bytes);
  return {
    kind: mime ? 'image' : 'binary',
    nick: note ? note.nick : null,
    name: note ? note.name : null,
    ts: note ? note.ts : Date.now(),
    size: bytes.length,
    url: URL.createObjectURL(new Blob([bytes], { type: mime || 'application/octet-stream' })),
  };
}


export function addRecord(room, record) {
  const history = roomHistory(room);
  history.push(record);
  if (history.length > MAX_HISTORY) {
    const dropped = history.shift();
    if (dropped.url) URL.revokeObjectURL(dropped.url);
    // The list holds one item per record, in order: keep it so (markOwn relies on it).
    if (room === state.room && ui.messages.firstElementChild) ui.messages.firstElementChild.remove();
  }
  if (room === state.room) {
    const stick = nearBottom() || record.own;
    ui.messages.append(renderRecord(record, history[history.length - 2]));
    ui.empty.hidden = true;
    if (stick) scrollToBottom();
  }
}

/** Forget what the page shows of `room` (it is joined afresh and its history comes again). */
export function clearRoom(room) {
  for (const record of roomHistory(room).splice(0)) if (record.url) URL.revokeObjectURL(record.url);
  state.pendingFiles.delete(room);
  if (room === state.room) renderRoom();
}

export function addNotice(room, text) {
  addRecord(room, { kind: 'notice', text, ts: Date.now() });
}

export function markOwn(room, key) {
  state.own.add(`${room}|${key}`);
  const history = roomHistory(room);
  const index = history.findIndex((item) => item.key === key);
  if (index < 0 || history[index].own) return;
  history[index].own = true;
  if (room !== state.room) return;
  // The item and the one after it may group differently now: render both again.
  for (const i of [index, index + 1]) {
    const node = ui.messages.children[i];
    if (node) node.replaceWith(renderRecord(history[i], history[i - 1]));
  }
  scrollToBottom();
}
