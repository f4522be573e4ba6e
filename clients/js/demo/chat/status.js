/** The connection's state as the page shows it: the status pill, the banner, who is online. */
import { element, paintAvatar, ui } from './dom.js';
import { state } from './state.js';

const STATUS_TEXT = {
  idle: 'Not connected',
  connecting: 'Connecting…',
  open: 'Connected',
  reconnecting: 'Reconnecting…',
  closed: 'Disconnected',
  error: 'Connection failed',
};

// Shown instead on narrow screens (CSS), where the header has no room for the long words.
const STATUS_SHORT = {
  idle: 'Offline',
  connecting: 'Connecting',
  open: 'Connected',
  reconnecting: 'Reconnecting',
  closed: 'Offline',
  error: 'Failed',
};

export function setStatus(name, detail) {
  ui.status.dataset.state = name;
  ui.status.dataset.short = STATUS_SHORT[name];
  ui.statusText.textContent = STATUS_TEXT[name];
  ui.status.title = detail || '';
  ui.app.dataset.connection = name;
}

export function showTransport() {
  const pw = state.pw;
  const live = pw && pw.readyState === Pushwire.OPEN && ui.status.dataset.state === 'open';
  const name = (pw && pw.transport) || (state.transport === 'auto' ? '' : state.transport);
  ui.transport.textContent = name || '—';
  ui.transport.classList.toggle('pending', !live);
  ui.sessionLine.textContent = pw && pw.session ? `session ${pw.session.slice(0, 10)}…` : '';
}

export function showBanner(text, withRetry) {
  ui.bannerText.textContent = text;
  ui.retryButton.hidden = !withRetry;
  ui.banner.hidden = false;
}

export function hideBanner() {
  ui.banner.hidden = true;
}

export function setOnline(count) {
  state.online = count;
  ui.onlineCount.textContent = count === null ? '–' : String(count);
  ui.onlineCount.parentElement.classList.toggle('unknown', count === null);
}

/**
 * The people in the room, from the connection's presence (every server node's members):
 * one row per user, with how many sessions (tabs) they have and the transport they came by.
 */
export function renderPeople() {
  const pw = state.pw;
  const presence = pw && pw.readyState === Pushwire.OPEN ? pw.presence(state.room) : null;
  ui.peopleRoom.textContent = state.room;
  ui.peopleList.textContent = '';
  if (!presence) {
    ui.peopleCount.textContent = '';
    ui.peopleMore.hidden = true;
    return;
  }
  const people = new Map();
  for (const member of presence.members) {
    const name = member.user || 'anonymous';
    const person = people.get(name) || { name, sessions: 0, via: new Set() };
    person.sessions += 1;
    if (member.info && typeof member.info.via === 'string') person.via.add(member.info.via);
    people.set(name, person);
  }
  const sorted = Array.from(people.values()).sort((a, b) => {
    if ((a.name === state.nick) !== (b.name === state.nick)) return a.name === state.nick ? -1 : 1;
    return a.name.localeCompare(b.name);
  });
  ui.peopleCount.textContent = `· ${people.size}`;
  for (const person of sorted) {
    const row = element('li', 'person');
    row.dataset.user = person.name;
    const avatar = element('span', 'avatar person-avatar');
    avatar.setAttribute('aria-hidden', 'true');
    paintAvatar(avatar, person.name);
    const presenceDot = element('span', 'person-dot');
    presenceDot.setAttribute('aria-hidden', 'true');
    avatar.append(presenceDot);
    const text = element('span', 'person-text');
    const name = element('span', 'person-name', person.name);
    name.dataset.testid = 'person-name';
    if (person.name === state.nick) name.append(element('span', 'person-you', 'you'));
    const details = [Array.from(person.via).sort().join(', ')];
    if (person.sessions > 1) details.push(`${person.sessions} tabs`);
    const via = element('span', 'person-via', details.filter(Boolean).join(' · '));
    via.dataset.testid = 'person-via';
    text.append(name, via);
    row.append(avatar, text);
    ui.peopleList.append(row);
  }
  const unlisted = presence.count - presence.members.length;
  ui.peopleMore.hidden = unlisted <= 0;
  ui.peopleMore.textContent = unlisted > 0 ? `and ${unlisted} more` : '';
}
