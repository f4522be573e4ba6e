/** The page's one Pushwire connection: opened with the nickname and transport chosen, and its events. */
import { ENDPOINT, HISTORY_ON_JOIN } from './constants.js';
import { toast } from './dom.js';
import { addNotice, clearRoom, receive } from './records.js';
import { state } from './state.js';
import { hideBanner, renderPeople, setOnline, setStatus, showBanner, showTransport } from './status.js';

/** Close the current connection (ending its session) and forget it. */
export function disconnect() {
  const pw = state.pw;
  state.pw = null;
  if (pw && pw.readyState < Pushwire.CLOSING) pw.close(1000, 'leaving');
}

export function connect() {
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
    const lost = event.from.epoch === event.to.epoch ? event.to.offset - event.from.offset : 0;
    const what = lost === 1 ? '1 earlier message' : lost > 1 ? `${lost} earlier messages` : 'Earlier messages';
    addNotice(event.channel, `${what} could not be shown: the server no longer keeps them.`);
  }));
  pw.addEventListener('expired', current(() => {
    addNotice(state.room, 'Your previous session expired; a new one was started.');
  }));
  pw.addEventListener('servererror', current((event) => {
    toast(`Server: ${event.message || event.code}`);
  }));
  subscribe(state.room);
}

/** Join `room` afresh: its last messages come from the server's history, then live ones. What
 * the page showed of it is replaced (it missed what was said while it was not subscribed). */
export function subscribe(room) {
  const pw = state.pw;
  if (!pw) return;
  clearRoom(room);
  pw.subscribe(room, { presence: true, rewind: HISTORY_ON_JOIN }).catch((error) => {
    if (pw !== state.pw || pw.readyState >= Pushwire.CLOSING) return;
    if (error.code === 'unsubscribed') return; // switched away before the answer
    addNotice(room, `Could not join #${room}: ${error.message || error}`);
  });
}
