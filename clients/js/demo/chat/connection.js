/** The page's one Pushwire connection: opened with the nickname and transport chosen, and its events. */
import { ENDPOINT } from './constants.js';
import { toast } from './dom.js';
import { addNotice, receive } from './records.js';
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

export function subscribe(room) {
  const pw = state.pw;
  if (!pw) return;
  pw.subscribe(room, { presence: true }).catch((error) => {
    if (pw !== state.pw || pw.readyState >= Pushwire.CLOSING) return;
    if (error.code === 'unsubscribed') return; // switched away before the answer
    addNotice(room, `Could not join #${room}: ${error.message || error}`);
  });
}
