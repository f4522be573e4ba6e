// Typed usage of the package as an application imports it: `tsc -p tsconfig.json` must pass.
// Every event of PushwireEventMap is listened to with the fields its type gives.
import Pushwire, {
  type GapEvent,
  type Member,
  type PresenceSnapshot,
  type PushwireMessageEvent,
  type PushwireOptions,
  Pushwire as Named,
} from 'pushwire';

const options: PushwireOptions = {
  user: 'alice',
  transports: ['websocket', 'sse', 'longpoll'],
  getToken: async () => 'a token',
  retry: { attempts: 3 },
  inboxSince: { epoch: 'e1', offset: 4 },
};
const pw: Named = new Pushwire('/pushwire', options);
const same: typeof Named = Pushwire;

pw.binaryType = 'arraybuffer';
if (pw.readyState === Pushwire.OPEN) pw.send(new Uint8Array([1, 2]));
const transport: string | null = pw.transport;
const position: { epoch: string; offset: number } | null = pw.inboxPosition;

pw.onopen = () => console.log('open', pw.protocol, transport, position, same.SUBPROTOCOL);
pw.onmessage = (event) => {
  const channel: string | null = event.channel;
  const offset: number | null = event.offset;
  if (typeof event.data === 'string') console.log(channel, offset, event.data.length);
};
pw.onclose = (event) => console.log(event.code, event.reason, event.wasClean);
pw.onerror = (event) => console.log(event.operation, event.code, event.attempts);

pw.addEventListener('message', (event: PushwireMessageEvent) => console.log(event.lastEventId));
pw.addEventListener('gap', (event: GapEvent) => {
  const from = event.from === null ? 'unknown' : `${event.from.epoch}:${event.from.offset}`;
  console.log(event.channel ?? 'direct messages', from, event.to?.offset);
});
pw.addEventListener('presence', (event) => {
  const names: (string | null)[] = event.members.map((member: Member) => member.user);
  console.log(event.channel, event.count, names, event.truncated);
});
pw.addEventListener('join', (event) => console.log(event.member.member, event.count));
pw.addEventListener('leave', (event) => console.log(event.member.info, event.channel));
pw.addEventListener('expired', (event) => console.log(event.session));
pw.addEventListener('transport', (event) => {
  const now: 'websocket' | 'sse' | 'stream' | 'iframe' | 'longpoll' | 'polling' = event.transport;
  console.log(now, event.previous);
});
pw.addEventListener('reconnecting', (event) => console.log(event.code, event.reason));
pw.addEventListener('backoff', (event) => console.log(event.code, event.retryAfter));
pw.addEventListener('reconnected', (event) => console.log(event.type));
pw.addEventListener('servererror', (event) => console.log(event.code, event.message));
pw.addEventListener('error', (event) => console.log(event.channel));
pw.addEventListener('close', (event) => console.log(event.code));
pw.addEventListener('open', function () {
  const self: Named = this;
  console.log(self.session, self.user);
});
// Any other type still takes a plain listener, as EventTarget's does.
pw.addEventListener('custom', (event: Event) => console.log(event.type), { once: true });

async function run(): Promise<void> {
  const joined = await pw.subscribe('room', { presence: true });
  console.log(joined.channel, joined.epoch, joined.offset);
  const published = await pw.publish('room', 'hello', { idempotencyKey: 'k1' });
  console.log(published.offset);
  const now: PresenceSnapshot = await pw.fetchPresence('room');
  const last: PresenceSnapshot | null = pw.presence('room');
  console.log(now.count, last?.members.length);
  await pw.unsubscribe('room');
  pw.close(1000, 'bye');
}
void run();
