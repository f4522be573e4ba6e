/**
 * TypeScript declarations of pushwire.js, the browser client of pushwire (docs/protocol.md,
 * `pushwire.v1`). Written by hand from clients/js/src/ and checked against it:
 * tests/test_js_package.py compares the names declared here (members, statics, events) with
 * what the built client has and dispatches, and runs `tsc` over typed usage files.
 */

/** A place in a channel's history, or in a user's inbox of direct messages. */
export interface Position {
  epoch: string;
  offset: number;
}

/** The transports of `pushwire.v1`, as `options.transports` names them. */
export type TransportName = 'websocket' | 'sse' | 'stream' | 'iframe' | 'longpoll' | 'polling';

/** What data `send` and `publish` take, as `WebSocket.send` does. */
export type PushwireData = string | ArrayBuffer | ArrayBufferView | Blob;

export interface RetryOptions {
  /** Attempts in all, the first included (default 8). */
  attempts?: number;
  /** Backoff base, ms (default 500): attempt n+1 after a random wait up to min(delayMax, delay * 2^(n-1)). */
  delay?: number;
  /** Backoff bound, ms (default 10000). */
  delayMax?: number;
}

export interface PushwireOptions {
  /** The user id claimed in `hello`. */
  user?: string | null;
  /** The first connection token (a JWT, or a credential for the server's connect handler). */
  token?: string | null;
  /**
   * Gives a new token: called before the token expires (to refresh it without reconnecting)
   * and after it expired (close 4005) to come back with a new one. Without it, an expired
   * token ends the connection (`close` with code 4005).
   */
  getToken?: (() => Promise<string> | string) | null;
  /** Transport names, tried in this order (default: all six, `websocket` first). */
  transports?: readonly string[];
  /** Come back after a drop (default true). */
  reconnect?: boolean;
  /** Reconnection backoff base, ms (default 500). */
  reconnectDelay?: number;
  /** Reconnection backoff bound, ms (default 10000). */
  reconnectDelayMax?: number;
  /** An attempt without `welcome` after this is given up, ms (default 10000). */
  connectTimeout?: number;
  /** `polling`: the wait between two polls, ms (default 1000). */
  pollInterval?: number;
  /**
   * `longpoll`, `polling`: a poll not answered this long after the hold the welcome announced
   * (`longpoll_timeout`; 0 for `polling`) is abandoned as a lost connection and the session
   * resumed, ms (default 10000).
   */
  pollMargin?: number;
  /**
   * HTTP transports: an upload (`POST E/send`) not answered within this is abandoned as a
   * lost connection and the session resumed, ms (default 10000).
   */
  sendTimeout?: number;
  /** How a re-subscription or a publish that failed with `unavailable` (or a drop) is retried. */
  retry?: RetryOptions;
  /** The last direct message the user had (`inboxPosition` of an earlier client). */
  inboxSince?: Position | null;
}

/** One session in a channel with presence. `member` is the session's public id. */
export interface Member {
  member: string;
  user: string | null;
  info: Record<string, unknown>;
}

/** Who is in a channel, as last heard from the server. */
export interface PresenceSnapshot {
  channel: string;
  count: number;
  members: Member[];
  /** More are in the channel (`count`) than the server lists. */
  truncated: boolean;
}

/** The server's answer to `subscribe` and `publish`: the channel's position. */
export interface ChannelPosition extends Position {
  channel: string;
}

export interface SubscribeOptions {
  /** Also keep the channel's members and fire `presence`, `join` and `leave` events. */
  presence?: boolean;
  /** First deliver the channel's last `rewind` messages from its history (a `gap` event for
   * those it no longer holds), on the first subscription only. */
  rewind?: number;
}

export interface PublishOptions {
  /** The same key on every attempt: the server publishes the message once. Default: random. */
  idempotencyKey?: string;
}

/** A request that failed: the server's `error` code (`forbidden`, `unavailable`, ...),
 * `unsubscribed`, or `disconnected` (no answer before the connection dropped). */
export interface PushwireRequestError extends Error {
  code: string;
}

/** `message`: a channel message (`channel` set) or a direct message to the user (`channel` null). */
export interface PushwireMessageEvent<T = string | Blob | ArrayBuffer> extends MessageEvent<T> {
  readonly channel: string | null;
  /** Its place in the channel or in the user's inbox; null for a plain `send` echo. */
  readonly epoch: string | null;
  readonly offset: number | null;
}

/**
 * `error`: as WebSocket's (no fields, a `close` that was not clean follows); or, with
 * `operation` set, something the client did for the app was given up and the connection goes
 * on (a re-subscription after a reconnection that was refused or stayed `unavailable`).
 */
export interface PushwireErrorEvent extends Event {
  readonly operation?: 'subscribe';
  readonly code?: string;
  readonly message?: string;
  readonly channel?: string;
  readonly attempts?: number;
}

/** `presence`: who is in a channel subscribed with `{presence: true}` changed. */
export interface PresenceEvent extends Event, PresenceSnapshot {}

/** `join` and `leave`: one session came into or left a channel with presence. */
export interface PresenceChangeEvent extends Event {
  readonly channel: string;
  readonly count: number;
  readonly member: Member;
}

/** `gap`: messages that cannot be recovered, between `from` and `to`; `channel` null for direct messages. */
export interface GapEvent extends Event {
  readonly channel: string | null;
  readonly from: Position | null;
  readonly to: Position | null;
}

/** `expired`: the old session is gone (a new one goes on); direct messages come from the inbox. */
export interface ExpiredEvent extends Event {
  readonly session: string | null;
}

/** `transport`: the connection now runs on another transport. */
export interface TransportEvent extends Event {
  readonly transport: TransportName;
  readonly previous: TransportName | null;
}

/** `reconnecting`: the connection dropped with `code`; the client is coming back. */
export interface ReconnectingEvent extends Event {
  readonly code: number;
  readonly reason: string;
}

/**
 * `backoff`: the server said to back off (close 4029, HTTP 429, 503 with Retry-After); the
 * client waits `retryAfter` seconds at least (at most 60) before it tries again.
 */
export interface BackoffEvent extends Event {
  readonly code: number;
  readonly reason: string;
  readonly retryAfter: number;
}

/** `servererror`: an `error` envelope from the server that answers no request. */
export interface ServerErrorEvent extends Event {
  readonly code: string;
  readonly message: string | undefined;
}

/** Every event a Pushwire dispatches, by type. */
export interface PushwireEventMap {
  open: Event;
  message: PushwireMessageEvent;
  error: PushwireErrorEvent;
  close: CloseEvent;
  presence: PresenceEvent;
  join: PresenceChangeEvent;
  leave: PresenceChangeEvent;
  gap: GapEvent;
  expired: ExpiredEvent;
  transport: TransportEvent;
  reconnecting: ReconnectingEvent;
  reconnected: Event;
  backoff: BackoffEvent;
  servererror: ServerErrorEvent;
}

/** What a transport is given to tell the connection (clients/js/src/transports/index.js). */
export interface TransportCallbacks {
  onopen(): void;
  onenvelope(envelope: Record<string, unknown>, bytes: Uint8Array | null): void;
  onclose(code: number, reason: string, wasClean: boolean, retryAfter?: number): void;
  onrecycle?(): void;
}

/** One connection of a transport, as the client drives it. */
export interface Transport {
  readonly name: string;
  readonly bufferedAmount: number;
  open(): void;
  send(envelope: Record<string, unknown>, bytes: Uint8Array | null): void;
  close(code: number, reason: string): void;
  abort(): void;
}

export interface TransportConstructor {
  new (url: string, callbacks: TransportCallbacks, options: PushwireOptions): Transport;
}

/**
 * A pushwire connection that behaves like the browser's `WebSocket` (readyState, events,
 * `send`, `close`, `bufferedAmount`, `binaryType`) and adds channels, presence, direct
 * messages, and reconnection that the application does not see.
 */
export declare class Pushwire extends EventTarget {
  /** `url`: ws(s):// or http(s)://, absolute or relative to the page, as `new WebSocket` takes it. */
  constructor(url: string | URL, options?: PushwireOptions);

  static readonly CONNECTING: 0;
  static readonly OPEN: 1;
  static readonly CLOSING: 2;
  static readonly CLOSED: 3;
  /** `pushwire.v1` */
  static readonly SUBPROTOCOL: string;
  /** Transports by name; a page may add its own. */
  static transports: Record<string, TransportConstructor>;

  readonly CONNECTING: 0;
  readonly OPEN: 1;
  readonly CLOSING: 2;
  readonly CLOSED: 3;

  /** The endpoint as ws:// or wss://. */
  readonly url: string;
  readonly readyState: 0 | 1 | 2 | 3;
  /** `pushwire.v1` once open, else empty. */
  readonly protocol: string;
  readonly extensions: string;
  /** Bytes queued or handed to the transport and not yet on the wire. */
  readonly bufferedAmount: number;
  binaryType: 'blob' | 'arraybuffer';
  /** The transport of the current (or last) connection, null before the first. */
  readonly transport: TransportName | null;
  /** The session id, from the welcome. */
  readonly session: string | null;
  /** The user the server knows this connection as. */
  readonly user: string | null;
  /** The last direct message's place in the user's inbox, or null. */
  readonly inboxPosition: Position | null;

  onopen: ((this: Pushwire, event: Event) => unknown) | null;
  onmessage: ((this: Pushwire, event: PushwireMessageEvent) => unknown) | null;
  onerror: ((this: Pushwire, event: PushwireErrorEvent) => unknown) | null;
  onclose: ((this: Pushwire, event: CloseEvent) => unknown) | null;

  /** Send to the endpoint (`{"type":"send"}`). Throws InvalidStateError while CONNECTING. */
  send(data: PushwireData): void;
  /** Close; a clean close ends the session on the server. `code`: 1000 or 3000-4999. */
  close(code?: number, reason?: string): void;

  /** Join a channel; its messages arrive as `message` events with `channel` set. */
  subscribe(channel: string, options?: SubscribeOptions): Promise<ChannelPosition>;
  /** Leave a channel. */
  unsubscribe(channel: string): Promise<{ channel: string }>;
  /** Publish to a channel (subscribed or not); retried with one idempotency key. */
  publish(channel: string, data: PushwireData, options?: PublishOptions): Promise<ChannelPosition>;
  /** Who is in a channel subscribed with `{presence: true}`, as last heard, or null. */
  presence(channel: string): PresenceSnapshot | null;
  /** Ask the server now who is in a channel this connection is subscribed to. */
  fetchPresence(channel: string): Promise<PresenceSnapshot>;

  addEventListener<K extends keyof PushwireEventMap>(
    type: K,
    listener: (this: Pushwire, event: PushwireEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  removeEventListener<K extends keyof PushwireEventMap>(
    type: K,
    listener: (this: Pushwire, event: PushwireEventMap[K]) => unknown,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void;
}

export default Pushwire;
