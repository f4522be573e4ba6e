/** The message list: each record rendered as text, an image or a file, grouped by sender. */
import { GROUP_WINDOW_MS, URL_PATTERN } from './constants.js';
import { element, hue, paintAvatar, ui } from './dom.js';
import { formatBytes, formatTime } from './format.js';
import { roomHistory, state } from './state.js';

export function renderRecord(record, previous) {
  if (record.kind === 'notice') {
    const item = element('li', 'notice');
    item.dataset.testid = 'notice';
    item.append(element('span', 'notice-text', record.text));
    return item;
  }
  const nick = record.nick || 'anonymous';
  const item = element('li', 'message');
  item.dataset.testid = 'message';
  item.dataset.kind = record.kind;
  item.dataset.nick = nick;
  if (record.key) item.dataset.offset = record.key;
  if (record.own) item.classList.add('own');
  if (previous && previous.kind !== 'notice' && (previous.nick || 'anonymous') === nick
      && !!previous.own === !!record.own && record.ts - previous.ts < GROUP_WINDOW_MS
      && record.ts >= previous.ts) {
    item.classList.add('continued');
  }

  const avatar = element('span', 'avatar');
  avatar.setAttribute('aria-hidden', 'true');
  paintAvatar(avatar, nick);

  const body = element('div', 'message-body');
  const meta = element('div', 'meta');
  const nickNode = element('span', 'nick', nick);
  nickNode.dataset.testid = 'message-nick';
  nickNode.style.setProperty('--hue', String(hue(nick)));
  const time = element('time', 'time', formatTime(record.ts));
  time.dateTime = new Date(record.ts).toISOString();
  time.dataset.testid = 'message-time';
  meta.append(nickNode, time);
  item.title = new Date(record.ts).toLocaleString();

  const bubble = element('div', 'bubble');
  if (record.kind === 'text') {
    bubble.append(renderText(record.text));
  } else if (record.kind === 'image') {
    item.dataset.bytes = String(record.size);
    bubble.classList.add('media');
    const link = element('a', 'image-link');
    link.href = record.url;
    link.target = '_blank';
    link.rel = 'noopener';
    const image = element('img', 'image');
    image.src = record.url;
    image.alt = record.name ? record.name : `image from ${nick}`;
    image.dataset.testid = 'message-image';
    image.addEventListener('load', () => { if (nearBottom(240)) scrollToBottom(); });
    link.append(image);
    const caption = element('span', 'caption', `${record.name || 'image'} · ${formatBytes(record.size)}`);
    bubble.append(link, caption);
  } else {
    item.dataset.bytes = String(record.size);
    bubble.classList.add('file');
    const icon = element('span', 'file-icon', '01');
    icon.setAttribute('aria-hidden', 'true');
    const info = element('span', 'file-info');
    const label = element('span', 'file-size', `binary ${record.size} bytes`);
    label.dataset.testid = 'message-binary';
    info.append(label);
    if (record.name) info.prepend(element('span', 'file-name', record.name));
    const download = element('a', 'file-download', 'Download');
    download.href = record.url;
    download.download = record.name || 'pushwire.bin';
    bubble.append(icon, info, download);
  }
  body.append(meta, bubble);
  item.append(avatar, body);
  return item;
}

/** Text with http(s) links made clickable; every piece goes in as text. */
export function renderText(text) {
  const paragraph = element('p', 'text');
  paragraph.dataset.testid = 'message-text';
  let last = 0;
  for (const match of text.matchAll(URL_PATTERN)) {
    if (match.index > last) paragraph.append(text.slice(last, match.index));
    const link = element('a', 'text-link', match[0]);
    link.href = match[0];
    link.target = '_blank';
    link.rel = 'noopener noreferrer';
    paragraph.append(link);
    last = match.index + match[0].length;
  }
  if (last < text.length) paragraph.append(text.slice(last));
  return paragraph;
}

export function renderRoom() {
  const history = roomHistory(state.room);
  const items = history.map((record, i) => renderRecord(record, history[i - 1]));
  ui.messages.replaceChildren(...items);
  ui.empty.hidden = history.length > 0;
  ui.roomName.textContent = state.room;
  ui.messageInput.placeholder = `Message #${state.room}`;
  document.title = `#${state.room} · pushwire chat`;
  scrollToBottom();
}


export function nearBottom(slack = 80) {
  const scroller = ui.scroller;
  return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < slack;
}

export function scrollToBottom() {
  ui.scroller.scrollTop = ui.scroller.scrollHeight;
}
