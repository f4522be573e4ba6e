// Type-checking only (tsconfig.sources.json): what TypeScript cannot see through the mixing
// in pushwire.js. Each part's methods are on Pushwire.prototype, so Pushwire has them all.
import type { Channels } from './channels.js';
import type { Connecting } from './connecting.js';
import type { Incoming } from './incoming.js';
import type { Outgoing } from './outgoing.js';
import type { Presence } from './presence.js';
import type { Requests } from './requests.js';
import type { Session } from './session.js';
import type { Tokens } from './tokens.js';

declare module './pushwire.js' {
  interface Pushwire extends Channels, Connecting, Incoming, Outgoing, Presence, Requests, Session, Tokens {}
}

declare global {
  // CommonJS's, where the script build is require()d (global.js).
  var module: { exports?: unknown } | undefined;
}

