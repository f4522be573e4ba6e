/*
 * The pushwire chat demo: rooms are channels on the general endpoint `/pushwire`.
 *
 * A chat message is published as the JSON text {"nick","text","ts"} on the room's channel.
 * A file is published as the raw bytes, preceded by a small JSON note {"nick","ts","file"}
 * that names it; a receiver that never saw the note still shows the bytes (as an image
 * when they are one, else as "binary N bytes"). Everything received is untrusted: it
 * reaches the page through textContent and attributes, never through innerHTML.
 *
 * The page loads /pushwire.js first, which defines the global `Pushwire` used here.
 */
import { DEFAULT_ROOM, KEYS, MAX_NICK, MAX_ROOMS, ROOM_NAME, TRANSPORTS } from './constants.js';
import { connect, disconnect } from './connection.js';
import { ui } from './dom.js';
import { closeDrawer, openDrawer } from './drawer.js';
import { renderRoom } from './messages.js';
import { askNick, setNick } from './nick.js';
import { rememberRoom, renderRooms, switchRoom } from './rooms.js';
import { growComposer, sendFile, sendText } from './sending.js';
import { load, save, state } from './state.js';
import { setStatus } from './status.js';

function start() {
  const storedRooms = (() => {
    try { return JSON.parse(load(KEYS.rooms) || '[]'); } catch (error) { return []; }
  })();
  state.rooms = [DEFAULT_ROOM];
  for (const room of Array.isArray(storedRooms) ? storedRooms : []) {
    if (typeof room === 'string' && ROOM_NAME.test(room) && !state.rooms.includes(room)) state.rooms.push(room);
  }
  state.rooms = state.rooms.slice(0, MAX_ROOMS);
  const storedRoom = load(KEYS.room);
  state.room = storedRoom && ROOM_NAME.test(storedRoom) ? storedRoom : DEFAULT_ROOM;
  rememberRoom(state.room);
  const storedTransport = load(KEYS.transport);
  state.transport = TRANSPORTS.includes(storedTransport) ? storedTransport : 'auto';
  ui.transportSelect.value = state.transport;
  renderRooms();
  renderRoom();
  setStatus('idle');

  ui.nickForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const nick = ui.nickInput.value.trim().replace(/\s+/g, ' ');
    if (!nick) {
      ui.nickError.textContent = 'Please enter a nickname.';
      ui.nickError.hidden = false;
      return;
    }
    setNick(nick.slice(0, MAX_NICK));
  });
  ui.nickOverlay.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && state.nick) {
      ui.nickOverlay.hidden = true;
      ui.app.removeAttribute('aria-hidden');
    }
  });
  ui.changeNick.addEventListener('click', () => { closeDrawer(); askNick(); });

  ui.joinForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const room = ui.roomInput.value.trim().replace(/^#(?=.)/, '');
    if (!ROOM_NAME.test(room)) {
      ui.roomError.textContent = 'Room names are 1–64 letters, digits or _ - . : @ #';
      ui.roomError.hidden = false;
      return;
    }
    ui.roomError.hidden = true;
    ui.roomInput.value = '';
    switchRoom(room);
  });
  ui.roomInput.addEventListener('input', () => { ui.roomError.hidden = true; });

  ui.composer.addEventListener('submit', (event) => {
    event.preventDefault();
    sendText();
  });
  ui.messageInput.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      sendText();
    }
  });
  ui.messageInput.addEventListener('input', growComposer);
  ui.messageInput.addEventListener('paste', (event) => {
    const file = event.clipboardData && Array.from(event.clipboardData.files)[0];
    if (file) {
      event.preventDefault();
      sendFile(file);
    }
  });
  ui.fileInput.addEventListener('change', () => {
    const file = ui.fileInput.files[0];
    ui.fileInput.value = '';
    sendFile(file);
  });
  ui.scroller.addEventListener('dragover', (event) => {
    if (event.dataTransfer && Array.from(event.dataTransfer.types).includes('Files')) event.preventDefault();
  });
  ui.scroller.addEventListener('drop', (event) => {
    const file = event.dataTransfer && event.dataTransfer.files[0];
    if (file) {
      event.preventDefault();
      sendFile(file);
    }
  });

  ui.transportSelect.addEventListener('change', () => {
    state.transport = ui.transportSelect.value;
    save(KEYS.transport, state.transport);
    closeDrawer();
    if (state.nick) connect();
  });
  ui.retryButton.addEventListener('click', () => connect());
  ui.menuButton.addEventListener('click', () => {
    if (ui.app.classList.contains('drawer-open')) closeDrawer();
    else openDrawer();
  });
  ui.scrim.addEventListener('click', closeDrawer);
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') closeDrawer();
  });
  window.addEventListener('pagehide', () => disconnect());
  window.addEventListener('pageshow', (event) => {
    // Back from the back/forward cache: the connection was closed on the way out.
    if (event.persisted && state.nick && !state.pw) connect();
  });

  const nick = (load(KEYS.nick) || '').trim();
  if (nick) setNick(nick.slice(0, MAX_NICK));
  else askNick();
}

// For tests and the curious: the live connection and the page state.
window.pushwireChat = {
  get pw() { return state.pw; },
  get room() { return state.room; },
  get nick() { return state.nick; },
  switchRoom,
  connect,
};

start();
