// A room on the pushwire npm package: join a channel with presence, show who is here and
// what is said, say something. The query string picks the server and the room:
//   index.html?server=ws://127.0.0.1:8000/pushwire&room=lobby&user=alice&transports=websocket,sse
import {
  Pushwire,
  type Member,
  type PresenceEvent,
  type PushwireMessageEvent,
  type PushwireOptions,
} from 'pushwire';

/** What one message of the room carries: who said it and what. */
interface Said {
  from: string;
  text: string;
}

const params = new URLSearchParams(location.search);
const server = params.get('server') ?? '/pushwire';
const room = params.get('room') ?? 'lobby';
const user = params.get('user') ?? `guest-${Math.random().toString(36).slice(2, 7)}`;
const transports = params.get('transports');

const options: PushwireOptions = { user };
if (transports) options.transports = transports.split(',');
const connection = new Pushwire(server, options);

function element<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (found === null) throw new Error(`no #${id} on the page`);
  return found as T;
}

const messages = element<HTMLUListElement>('messages');
const state = element('state');
element('room').textContent = room;
element('user').textContent = user;

function show(text: string, notice = false): void {
  const item = document.createElement('li');
  item.textContent = text;
  if (notice) item.className = 'notice';
  messages.append(item);
}

function parse(data: unknown): Said | null {
  if (typeof data !== 'string') return null;
  try {
    const value: unknown = JSON.parse(data);
    if (value && typeof value === 'object' && 'from' in value && 'text' in value) {
      return { from: String(value.from), text: String(value.text) };
    }
  } catch {
    // not one of ours: shown as it came
  }
  return { from: '?', text: data };
}

connection.addEventListener('open', () => {
  state.textContent = 'open';
});
connection.addEventListener('transport', (event) => {
  element('transport').textContent = event.transport;
});
connection.addEventListener('message', (event: PushwireMessageEvent) => {
  if (event.channel !== room) return;
  const said = parse(event.data);
  if (said) show(`${said.from}: ${said.text}`);
});
connection.addEventListener('presence', (event: PresenceEvent) => {
  element('count').textContent = String(event.count);
  element('people').textContent = event.members.map((member: Member) => member.user ?? member.member).join(', ');
});
connection.addEventListener('gap', (event) => {
  if (event.channel === room) show('some messages could not be recovered', true);
});
connection.addEventListener('reconnecting', () => {
  state.textContent = 'reconnecting';
});
connection.addEventListener('reconnected', () => {
  state.textContent = 'open';
});
connection.addEventListener('close', (event) => {
  state.textContent = `closed (${event.code})`;
});

connection.subscribe(room, { presence: true }).then(
  () => document.body.setAttribute('data-joined', room),
  (error: Error) => show(`could not join ${room}: ${error.message}`, true),
);

element<HTMLFormElement>('say').addEventListener('submit', (event) => {
  event.preventDefault();
  const input = element<HTMLInputElement>('text');
  const text = input.value.trim();
  if (!text) return;
  input.value = '';
  const said: Said = { from: user, text };
  connection.publish(room, JSON.stringify(said)).catch((error: Error) => show(`not sent: ${error.message}`, true));
});

// A clean close ends the session on the server at once: the others see this one leave.
element('leave').addEventListener('click', () => connection.close(1000, 'left the room'));
