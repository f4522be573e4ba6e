/** The nickname: asked for in an overlay, remembered, and a new connection when it changes. */
import { KEYS } from './constants.js';
import { connect } from './connection.js';
import { paintAvatar, ui } from './dom.js';
import { save, state } from './state.js';

export function askNick() {
  ui.nickInput.value = state.nick || '';
  ui.nickError.hidden = true;
  ui.nickOverlay.hidden = false;
  ui.app.setAttribute('aria-hidden', 'true');
  ui.nickInput.focus();
  ui.nickInput.select();
}

export function setNick(nick) {
  const changed = nick !== state.nick;
  state.nick = nick;
  save(KEYS.nick, nick);
  ui.meNick.textContent = nick;
  paintAvatar(ui.meAvatar, nick);
  ui.nickOverlay.hidden = true;
  ui.app.removeAttribute('aria-hidden');
  if (changed || !state.pw) connect();
  ui.messageInput.focus();
}
