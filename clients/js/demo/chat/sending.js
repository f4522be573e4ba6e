/** Sending: a text message, or a file as its note then its bytes, to the current room. */
import { MAX_FILE } from './constants.js';
import { toast, ui } from './dom.js';
import { formatBytes } from './format.js';
import { markOwn } from './records.js';
import { state } from './state.js';

export function canSend() {
  const pw = state.pw;
  if (pw && pw.readyState === Pushwire.OPEN) return pw;
  toast(pw && pw.readyState === Pushwire.CONNECTING ? 'Still connecting…' : 'Not connected — press Reconnect.');
  return null;
}

export function publish(room, data) {
  const pw = canSend();
  if (!pw) return Promise.reject(new Error('not connected'));
  return pw.publish(room, data).then((answer) => {
    if (answer && answer.epoch !== undefined) markOwn(room, `${answer.epoch}:${answer.offset}`);
    return answer;
  });
}

export function sendText() {
  const text = ui.messageInput.value.trim();
  if (!text) return;
  const room = state.room;
  const sending = publish(room, JSON.stringify({ nick: state.nick, text, ts: Date.now() }));
  ui.messageInput.value = '';
  growComposer();
  sending.catch((error) => {
    if (error.message === 'not connected') {
      ui.messageInput.value = text;
      growComposer();
      return;
    }
    toast(`Not sent: ${error.message || error}`);
    if (!ui.messageInput.value) ui.messageInput.value = text;
  });
}

export function sendFile(file) {
  if (!file) return;
  if (file.size > MAX_FILE) {
    toast(`${file.name} is ${formatBytes(file.size)}; the limit here is ${formatBytes(MAX_FILE)}.`);
    return;
  }
  if (!canSend()) return;
  const room = state.room;
  file.arrayBuffer().then((buffer) => {
    const note = { nick: state.nick, ts: Date.now(), file: { name: file.name, size: buffer.byteLength, type: file.type } };
    // Both go out in this order on one connection, so the note comes first in the channel.
    publish(room, JSON.stringify(note)).catch(() => {});
    return publish(room, buffer);
  }).catch((error) => toast(`Not sent: ${error.message || error}`));
}

export function growComposer() {
  const input = ui.messageInput;
  input.style.height = 'auto';
  input.style.height = `${Math.min(input.scrollHeight, 160)}px`;
}
