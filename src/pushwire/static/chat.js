/*
 * The pushwire chat demo: rooms are channels on the general endpoint `/pushwire`.
 *
 * A chat message is published as the JSON text {"nick","text","ts"} on the room's channel.
 * A file is published as the raw bytes, preceded by a small JSON note {"nick","ts","file"}
 * that names it; a receiver that never saw the note still shows the bytes (as an image
 * when they are one, else as "binary N bytes"). Everything received is untrusted: it
 * reaches the page through textContent and attributes, never through innerHTML.
 */
(function () {
  'use strict';

  const ENDPOINT = '/pushwire';
  const DEFAULT_ROOM = 'lobby';
  // The server's channel alphabet (docs/protocol.md); the demo keeps names short.
  const ROOM_NAME = /^[A-Za-z0-9_\-.:@#]{1,64}$/;
  const MAX_NICK = 32;
  const MAX_TEXT = 2000;
  const MAX_FILE = 256 * 1024;
  const MAX_ROOMS = 12;
  const GROUP_WINDOW_MS = 3 * 60 * 1000;
  const MAX_HISTORY = 500; // records kept per room; older ones leave the page
  const TRANSPORTS = ['auto', 'websocket', 'sse', 'stream', 'iframe', 'longpoll', 'polling'];
  const KEYS = {
    nick: 'pushwire.chat.nick',
    room: 'pushwire.chat.room',
    rooms: 'pushwire.chat.rooms',
    transport: 'pushwire.chat.transport',
  };
  const URL_PATTERN = /\bhttps?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]]/g;

  const $ = (id) => document.getElementById(id);
  const ui = {
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

  const state = {
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

  function load(key) {
    try { return window.localStorage.getItem(key); } catch (error) { return null; }
  }

  function save(key, value) {
    try { window.localStorage.setItem(key, value); } catch (error) { /* private mode */ }
  }

  // -- small helpers ----------------------------------------------------------------------------

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function hue(name) {
    let hash = 0;
    for (const char of String(name)) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
    return hash % 360;
  }

  function initial(name) {
    const first = Array.from(String(name).trim())[0];
    return first ? first.toUpperCase() : '?';
  }

  function paintAvatar(node, name) {
    node.textContent = initial(name);
    node.style.setProperty('--hue', String(hue(name)));
  }

  function formatTime(ts) {
    return new Date(ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }

  function formatBytes(size) {
    if (size < 1024) return `${size} bytes`;
    if (size < 1024 * 1024) return `${(size / 1024).toFixed(1)} KB`;
    return `${(size / 1024 / 1024).toFixed(1)} MB`;
  }

  /** The image type of `bytes` from its magic number, or null (SVG is never trusted). */
  function sniffImage(bytes) {
    const starts = (...prefix) => prefix.every((byte, i) => bytes[i] === byte);
    if (starts(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)) return 'image/png';
    if (starts(0xff, 0xd8, 0xff)) return 'image/jpeg';
    if (starts(0x47, 0x49, 0x46, 0x38)) return 'image/gif';
    if (starts(0x52, 0x49, 0x46, 0x46) && bytes[8] === 0x57 && bytes[9] === 0x45
        && bytes[10] === 0x42 && bytes[11] === 0x50) return 'image/webp';
    if (starts(0x42, 0x4d) && bytes.length > 26) return 'image/bmp';
    return null;
  }

  let toastTimer = null;
  function toast(text) {
    ui.toast.textContent = text;
    ui.toast.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { ui.toast.hidden = true; }, 4000);
  }

  // -- connection state ------------------------------------------------------------------------

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

  function setStatus(name, detail) {
    ui.status.dataset.state = name;
    ui.status.dataset.short = STATUS_SHORT[name];
    ui.statusText.textContent = STATUS_TEXT[name];
    ui.status.title = detail || '';
    ui.app.dataset.connection = name;
  }

  function showTransport() {
    const pw = state.pw;
    const live = pw && pw.readyState === Pushwire.OPEN && ui.status.dataset.state === 'open';
    const name = (pw && pw.transport) || (state.transport === 'auto' ? '' : state.transport);
    ui.transport.textContent = name || '—';
    ui.transport.classList.toggle('pending', !live);
    ui.sessionLine.textContent = pw && pw.session ? `session ${pw.session.slice(0, 10)}…` : '';
  }

  function showBanner(text, withRetry) {
    ui.bannerText.textContent = text;
    ui.retryButton.hidden = !withRetry;
    ui.banner.hidden = false;
  }

  function hideBanner() {
    ui.banner.hidden = true;
  }

  function setOnline(count) {
    state.online = count;
    ui.onlineCount.textContent = count === null ? '–' : String(count);
    ui.onlineCount.parentElement.classList.toggle('unknown', count === null);
  }

  /**
   * The people in the room, from the connection's presence (every server node's members):
   * one row per user, with how many sessions (tabs) they have and the transport they came by.
   */
  function renderPeople() {
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

  /** Close the current connection (ending its session) and forget it. */
  function disconnect() {
    const pw = state.pw;
    state.pw = null;
    if (pw && pw.readyState < Pushwire.CLOSING) pw.close(1000, 'leaving');
  }

  function connect() {
    disconnect();
    hideBanner();
    setOnline(null);
    renderPeople();
    if (typeof window.Pushwire !== 'function') {
      setStatus('error', 'pushwire.js did not load');
      showBanner('The pushwire client (/pushwire.js) did not load.', true);
      return;
    }
    const options = { user: state.nick };
    if (state.transport !== 'auto') options.transports = [state.transport];
    let pw;
    try {
      pw = new Pushwire(ENDPOINT, options);
    } catch (error) {
      setStatus('error', String(error.message || error));
      showBanner(`Could not connect: ${error.message || error}`, true);
      return;
    }
    pw.binaryType = 'arraybuffer';
    state.pw = pw;
    state.opened = false;
    setStatus('connecting');
    showTransport();
    const current = (handler) => (event) => { if (pw === state.pw) handler(event); };

    pw.addEventListener('open', current(() => {
      state.opened = true;
      setStatus('open');
      hideBanner();
      showTransport();
    }));
    pw.addEventListener('reconnecting', current((event) => {
      setStatus('reconnecting', event.reason || `code ${event.code}`);
      showTransport();
      showBanner('Connection lost. Reconnecting — messages you send now go out once it is back.', false);
    }));
    pw.addEventListener('reconnected', current(() => {
      setStatus('open');
      hideBanner();
      showTransport();
    }));
    pw.addEventListener('close', current((event) => {
      setOnline(null);
      renderPeople();
      const how = `code ${event.code}${event.reason ? `: ${event.reason}` : ''}`;
      if (!state.opened) {
        setStatus('error', how);
        showBanner(state.transport === 'auto'
          ? 'Could not connect to the server. Check that it is running, or pick a transport in the sidebar.'
          : `Could not connect over ${state.transport}. This transport may not be available here — pick another one, or retry.`,
        true);
      } else {
        setStatus('closed', how);
        showBanner(`Disconnected (${how}).`, true);
      }
      showTransport();
    }));
    pw.addEventListener('transport', current(showTransport)); // a fallback picked another
    pw.addEventListener('message', current(receive));
    pw.addEventListener('presence', current((event) => {
      if (event.channel !== state.room) return;
      setOnline(event.count);
      renderPeople();
    }));
    pw.addEventListener('gap', current((event) => {
      addNotice(event.channel, 'Some messages were missed while disconnected and could not be recovered.');
    }));
    pw.addEventListener('expired', current(() => {
      addNotice(state.room, 'Your previous session expired; a new one was started.');
    }));
    pw.addEventListener('servererror', current((event) => {
      toast(`Server: ${event.message || event.code}`);
    }));
    subscribe(state.room);
  }

  function subscribe(room) {
    const pw = state.pw;
    if (!pw) return;
    pw.subscribe(room, { presence: true }).catch((error) => {
      if (pw !== state.pw || pw.readyState >= Pushwire.CLOSING) return;
      if (error.code === 'unsubscribed') return; // switched away before the answer
      addNotice(room, `Could not join #${room}: ${error.message || error}`);
    });
  }

  // -- receiving ---------------------------------------------------------------------------------

  function receive(event) {
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
    record.key = key;
    record.own = state.own.has(`${room}|${key}`);
    addRecord(room, record);
  }

  function textRecord(room, data) {
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

  function binaryRecord(room, bytes) {
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

  function roomHistory(room) {
    if (!state.history.has(room)) state.history.set(room, []);
    return state.history.get(room);
  }

  function addRecord(room, record) {
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

  function addNotice(room, text) {
    addRecord(room, { kind: 'notice', text, ts: Date.now() });
  }

  function markOwn(room, key) {
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

  // -- rendering ---------------------------------------------------------------------------------

  function renderRecord(record, previous) {
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
  function renderText(text) {
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

  function renderRoom() {
    const history = roomHistory(state.room);
    const items = history.map((record, i) => renderRecord(record, history[i - 1]));
    ui.messages.replaceChildren(...items);
    ui.empty.hidden = history.length > 0;
    ui.roomName.textContent = state.room;
    ui.messageInput.placeholder = `Message #${state.room}`;
    document.title = `#${state.room} · pushwire chat`;
    scrollToBottom();
  }

  function renderRooms() {
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

  function nearBottom(slack = 80) {
    const scroller = ui.scroller;
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < slack;
  }

  function scrollToBottom() {
    ui.scroller.scrollTop = ui.scroller.scrollHeight;
  }

  // -- rooms ---------------------------------------------------------------------------------------

  function rememberRoom(room) {
    if (!state.rooms.includes(room)) {
      state.rooms.push(room);
      while (state.rooms.length > MAX_ROOMS) {
        const drop = state.rooms.findIndex((name) => name !== room && name !== DEFAULT_ROOM);
        state.rooms.splice(drop, 1);
      }
      save(KEYS.rooms, JSON.stringify(state.rooms));
    }
  }

  function switchRoom(room) {
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

  // -- sending -------------------------------------------------------------------------------------

  function canSend() {
    const pw = state.pw;
    if (pw && pw.readyState === Pushwire.OPEN) return pw;
    toast(pw && pw.readyState === Pushwire.CONNECTING ? 'Still connecting…' : 'Not connected — press Reconnect.');
    return null;
  }

  function publish(room, data) {
    const pw = canSend();
    if (!pw) return Promise.reject(new Error('not connected'));
    return pw.publish(room, data).then((answer) => {
      if (answer && answer.epoch !== undefined) markOwn(room, `${answer.epoch}:${answer.offset}`);
      return answer;
    });
  }

  function sendText() {
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

  function sendFile(file) {
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

  function growComposer() {
    const input = ui.messageInput;
    input.style.height = 'auto';
    input.style.height = `${Math.min(input.scrollHeight, 160)}px`;
  }

  // -- nickname ------------------------------------------------------------------------------------

  function askNick() {
    ui.nickInput.value = state.nick || '';
    ui.nickError.hidden = true;
    ui.nickOverlay.hidden = false;
    ui.app.setAttribute('aria-hidden', 'true');
    ui.nickInput.focus();
    ui.nickInput.select();
  }

  function setNick(nick) {
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

  // -- drawer (narrow screens) ---------------------------------------------------------------------

  function openDrawer() {
    ui.app.classList.add('drawer-open');
    ui.menuButton.setAttribute('aria-expanded', 'true');
    ui.scrim.hidden = false;
  }

  function closeDrawer() {
    ui.app.classList.remove('drawer-open');
    ui.menuButton.setAttribute('aria-expanded', 'false');
    ui.scrim.hidden = true;
  }

  // -- wiring --------------------------------------------------------------------------------------

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
})();
