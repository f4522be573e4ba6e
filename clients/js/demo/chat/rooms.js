/** The rooms: the list in the sidebar, remembered across visits, and switching between them. */
import { DEFAULT_ROOM, KEYS, MAX_ROOMS } from './constants.js';
import { subscribe } from './connection.js';
import { element, ui } from './dom.js';
import { closeDrawer } from './drawer.js';
import { renderRoom } from './messages.js';
import { save, state } from './state.js';
import { renderPeople, setOnline } from './status.js';

export function renderRooms() {
  const items = state.rooms.map((room) => {
    const item = element('li', 'room-item');
    const button = element('button', 'room-button');
    button.type = 'button';
    button.dataset.testid = 'room';
    button.dataset.room = room;
    const hash = element('span', 'room-hash', '#');
    hash.setAttribute('aria-hidden', 'true');
    button.append(hash, element('span', 'room-label', room));
    if (room === state.room) {
      button.setAttribute('aria-current', 'true');
      item.classList.add('current');
    }
    button.addEventListener('click', () => switchRoom(room));
    item.append(button);
    if (room !== state.room && room !== DEFAULT_ROOM) {
      const remove = element('button', 'room-remove', '×');
      remove.type = 'button';
      remove.title = `Forget #${room}`;
      remove.setAttribute('aria-label', `Forget #${room}`);
      remove.addEventListener('click', () => {
        state.rooms = state.rooms.filter((name) => name !== room);
        save(KEYS.rooms, JSON.stringify(state.rooms));
        renderRooms();
      });
      item.append(remove);
    }
    return item;
  });
  ui.roomList.replaceChildren(...items);
}

export function rememberRoom(room) {
  if (!state.rooms.includes(room)) {
    state.rooms.push(room);
    while (state.rooms.length > MAX_ROOMS) {
      const drop = state.rooms.findIndex((name) => name !== room && name !== DEFAULT_ROOM);
      state.rooms.splice(drop, 1);
    }
    save(KEYS.rooms, JSON.stringify(state.rooms));
  }
}

export function switchRoom(room) {
  closeDrawer();
  if (room === state.room) return;
  const previous = state.room;
  state.room = room;
  save(KEYS.room, room);
  rememberRoom(room);
  renderRooms();
  renderRoom();
  setOnline(null);
  renderPeople();
  const pw = state.pw;
  if (pw && pw.readyState < Pushwire.CLOSING) {
    pw.unsubscribe(previous).catch(() => { /* the connection went away: so did the channel */ });
    subscribe(room);
  }
  ui.messageInput.focus();
}
