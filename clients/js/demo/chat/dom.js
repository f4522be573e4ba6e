/** The page's elements by role, and the small helpers that build and paint them. */

const $ = (id) => document.getElementById(id);
export const ui = {
  app: $('app'),
  menuButton: $('menu-button'),
  sidebar: $('sidebar'),
  scrim: $('scrim'),
  status: $('status'),
  statusText: $('status-text'),
  transport: $('transport'),
  roomList: $('room-list'),
  joinForm: $('join-form'),
  roomInput: $('room-input'),
  roomError: $('room-error'),
  meAvatar: $('me-avatar'),
  meNick: $('me-nick'),
  changeNick: $('change-nick'),
  transportSelect: $('transport-select'),
  sessionLine: $('session-line'),
  roomName: $('room-name'),
  onlineCount: $('online-count'),
  peopleRoom: $('people-room'),
  peopleCount: $('people-count'),
  peopleList: $('people-list'),
  peopleMore: $('people-more'),
  banner: $('banner'),
  bannerText: $('banner-text'),
  retryButton: $('retry-button'),
  scroller: $('scroller'),
  empty: $('empty'),
  messages: $('messages'),
  composer: $('composer'),
  fileInput: $('file-input'),
  messageInput: $('message-input'),
  nickOverlay: $('nick-overlay'),
  nickForm: $('nick-form'),
  nickInput: $('nick-input'),
  nickError: $('nick-error'),
  toast: $('toast'),
};

export function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export function hue(name) {
  let hash = 0;
  for (const char of String(name)) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
  return hash % 360;
}

export function initial(name) {
  const first = Array.from(String(name).trim())[0];
  return first ? first.toUpperCase() : '?';
}

export function paintAvatar(node, name) {
  node.textContent = initial(name);
  node.style.setProperty('--hue', String(hue(name)));
}

let toastTimer = null;
export function toast(text) {
  ui.toast.textContent = text;
  ui.toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { ui.toast.hidden = true; }, 4000);
}
