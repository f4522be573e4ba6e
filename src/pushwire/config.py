"""Limits and defaults: one frozen dataclass. Every bound pushwire enforces is named here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Config:
    """Server settings. Sizes are bytes, times seconds, counts plain integers.

    Each bound is enforced with a defined answer to the client that crosses it; see
    docs/protocol.md "Limits".
    """

    host: str = "127.0.0.1"
    port: int = 8000
    #: "memory" (one process) or a Redis URL, redis://host:port/db (many processes and machines),
    #: or a Redis Cluster's, redis+cluster://host:port[,host:port…] (docs/scaling.md).
    broker: str = "memory"
    #: The raw TCP transport's port (None: off; 0: any free port).
    tcp_port: int | None = None
    #: PEM certificate and key: TLS on every port (HTTP, WebSocket and TCP) when set.
    tls_cert: str | None = None
    tls_key: str | None = None
    #: Origins allowed besides the server's own and loopback ones, each `scheme://host[:port]`;
    #: "*" allows any.
    allow_origins: tuple[str, ...] = ()
    #: Host names served besides the bound host and the loopback names (bound to 0.0.0.0 or
    #: ::, the machine's host name): a request with another Host gets 421, against DNS
    #: rebinding. Behind a proxy, add the public name. "*" serves any Host.
    allow_hosts: tuple[str, ...] = ()
    #: False refuses every WebSocket upgrade with 403, as a proxy that blocks WebSocket would:
    #: clients fall back to the HTTP transports.
    websocket: bool = True
    #: Application subprotocols offered besides pushwire.v1, in the server's order of preference.
    subprotocols: tuple[str, ...] = ()
    #: Negotiate permessage-deflate (RFC 7692) with WebSocket clients that offer it, always
    #: with `server_no_context_takeover`: a channel message is compressed once per framing
    #: and the same compressed frame goes to every subscriber that negotiated it.
    websocket_compression: bool = False
    #: Messages shorter than this (bytes, before compression) go out uncompressed.
    websocket_compression_threshold: int = 128

    # Authentication (docs/security.md). None of these set: an open server, where a client is
    # the user it claims (the demo on a loopback address).
    #: HMAC secret of the connection and subscription tokens (JWT, HS256).
    jwt_secret: str | None = None
    #: PEM file of the tokens' public key (RS256 or ES256).
    jwt_public_key_file: str | None = None
    #: JWKS file of the tokens' public keys, chosen by each token's `kid`.
    jwks_file: str | None = None
    #: The `aud` a token must name, and the `iss` it must have (unchecked when unset).
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    #: Seconds of clock skew allowed on a token's `exp`, `nbf` and `iat`; a session lives this
    #: long past its token's `exp` too (then it is closed 4005 unless refreshed).
    jwt_leeway: float = 5.0
    #: With authentication: let a connection without a token in, as no user (it may read the
    #: channels whose rule is `anyone`).
    anonymous: bool = False
    #: The key the HTTP API (`/api/*`) asks for once authentication is configured
    #: (`Authorization: Bearer <key>`); unset then, the API refuses every call.
    api_key: str | None = None

    # The backend proxy (docs/security.md "The backend proxy"): pushwire asks the app's backend
    # over HTTP, a POST of JSON per decision, and acts on its JSON answer.
    #: URL asked who a connecting client is (it gets the token and the forwarded headers);
    #: set, the server is authenticating (a claimed user is ignored).
    connect_proxy: str | None = None
    #: URL asked whether a session may read a channel, after the channel's namespace rule.
    subscribe_proxy: str | None = None
    #: URL asked whether a session may publish a message to a channel, after the rule.
    publish_proxy: str | None = None
    #: The client's request headers passed on to the backend (matched without regard to
    #: case; no other header is ever passed on).
    proxy_headers: tuple[str, ...] = ("Cookie", "Authorization")
    #: Seconds the backend gets to answer one question, connecting included (close 1011 /
    #: 503 `unavailable` when over).
    proxy_timeout: float = 3.0
    #: Questions to the backend in flight per process; one more is refused at once (close
    #: 1011 / 503 `unavailable`), not queued.
    proxy_max_concurrent: int = 100
    #: Bytes of the backend's answer read at most (a longer one is refused as unusable).
    proxy_max_answer: int = 64 * 1024

    #: Request line plus headers of one HTTP request (431 when over).
    max_header_bytes: int = 16 * 1024
    #: Request body (413 when over). Twice max_message: an HTTP transport's POST carries the
    #: envelope around a message, and base64 makes binary a third larger.
    max_body_bytes: int = 2 * 1024 * 1024
    #: Time to receive a complete request head once the first byte arrived (408 when over);
    #: also the time a TLS handshake may take (the connection is dropped when over).
    header_timeout: float = 10.0
    #: Time to receive the body once the head is complete (408 when over).
    body_timeout: float = 30.0
    #: Progress of what is unfinished: a request body, a WebSocket message or a TCP frame
    #: begun must bring at least `min_receive_rate` bytes a second, counted over each
    #: `receive_window` seconds, or end within the window. One that trickles slower (or
    #: stalls) is cut and its buffer freed: HTTP 408, WebSocket close 1008, TCP `error`
    #: `bad_request` and `close` 4100.
    min_receive_rate: int = 16 * 1024
    receive_window: float = 5.0
    #: Idle time of a keep-alive connection between requests before it is closed (a new
    #: connection's is counted from its batch of accepts: up to 0.1 s less).
    keepalive_timeout: float = 30.0
    #: Requests read ahead of the one being answered; reading pauses beyond it.
    max_pipelined: int = 16
    #: Open TCP connections per process, TLS handshakes in progress included; one more gets
    #: 503 and is closed (over TLS: dropped before its handshake). 0 (the default): what the
    #: process can hold, its open-file limit (raised to the hard limit at start) minus
    #: `fd_reserve`.
    max_connections: int = 0
    #: File descriptors kept for other uses (listening sockets, Redis, the auth proxy, logs)
    #: when `max_connections` is derived from the open-file limit.
    fd_reserve: int = 256
    #: Open connections from one IP address (0: no bound); one more gets 503 and is closed
    #: (TCP port: close 4000; over TLS: dropped before its handshake).
    max_connections_per_ip: int = 0
    #: Whether loopback addresses (127.0.0.0/8, ::1) are exempt from `max_connections_per_ip`,
    #: the other per-address limits and the session rates (a local proxy or health checker in
    #: front of the server); `--per-ip-exempt-loopback`.
    per_ip_exempt_loopback: bool = False
    #: Addresses and CIDR blocks exempt from every per-address limit and from the
    #: per-session rates (a backend publishing over a socket, a monitor); `--limit-exempt`.
    limit_exempt: tuple[str, ...] = ()
    #: Bits of an IPv6 address that name one client for every per-address limit (one
    #: holder of a /64 has 2^64 addresses): IPv6 addresses are counted by their /64 by
    #: default, 128 counts each address alone. IPv4 addresses (and IPv4-mapped IPv6 ones,
    #: `::ffff:a.b.c.d`) are counted by the address.
    per_ip_ipv6_prefix: int = 64
    #: Proxies (addresses, CIDR blocks) whose `X-Forwarded-For` names the client; the
    #: rightmost address in it that is not a listed proxy is the client's, for every
    #: per-address limit, the logs and the connect proxy. From any other peer the header is
    #: ignored. A listed proxy is not bound by `max_connections_per_ip`. `--trust-proxy`.
    trust_proxy: tuple[str, ...] = ()
    #: Sessions open at once in this process, detached ones waiting out `session_grace`
    #: included; one more is refused (HTTP 503 + Retry-After, or `error` `limit`, close 4029).
    max_sessions: int = 200_000
    #: Sessions open at once from one address (0: no bound); refused as `max_sessions`.
    max_sessions_per_ip: int = 0
    #: Sessions open at once of one user, once it is known (0: no bound); refused as
    #: `max_sessions`.
    max_sessions_per_user: int = 0
    #: Handshakes a second from one address (0: no bound), bursts of `handshake_burst`: a
    #: WebSocket upgrade, a stream opened, a polling `hello`, a TCP client's `hello`. Over it:
    #: HTTP 429 + Retry-After (TCP: `error` `rate_limited`, close 4029).
    handshakes_per_ip: float = 0.0
    handshake_burst: int = 20
    #: Messages a second a session may send (0: no bound), bursts of `message_burst`; and
    #: bytes a second (characters of a text message), bursts of `byte_burst` (at least
    #: `max_message`). A message over either is dropped with `error` `rate_limited`; after
    #: `rate_limit_strikes` dropped in a row the connection is closed 4029. Raw mode (no
    #: envelope) is closed 4029 at the first. The defaults are far above what any person or
    #: app sends (a publisher of 5,000 messages a second is a flood), and cost nothing that
    #: can be measured (docs/benchmarks.md).
    messages_per_second: float = 5000.0
    message_burst: int = 10_000
    bytes_per_second: float = 32 * 1024 * 1024
    byte_burst: int = 64 * 1024 * 1024
    rate_limit_strikes: int = 10
    #: Requests a second to the HTTP API (`/api/*`) from one address that does not show the
    #: API key (0: no bound), bursts of `api_burst`: HTTP 429 + Retry-After.
    api_requests_per_ip: float = 0.0
    api_burst: int = 100

    #: Longest user id, characters: claimed, in a token or given by a connect handler
    #: (`error` `too_large`, close 4100; HTTP 400). Presence lists user ids.
    max_user_id: int = 256
    #: Longest request `id` of an envelope, characters of a string (a number is at most 2^53
    #: in size); the id is echoed in the answer, so a longer one is refused with `error`
    #: `bad_request` without it.
    max_request_id: int = 128
    #: Largest application message (WebSocket close 1009, error `too_large` when over).
    max_message: int = 1024 * 1024
    #: Bytes waiting in one connection's socket buffer before it is a slow consumer (close 4001).
    max_write_buffer: int = 4 * 1024 * 1024
    #: Channels one session may be subscribed to (error `limit` when over).
    max_subscriptions: int = 256
    #: Longest channel name, characters.
    max_channel_name: int = 200
    #: Seconds between WebSocket pings; a TCP client silent this long is pinged. The welcome
    #: announces it as `heartbeat`.
    ping_interval: float = 20.0
    #: Seconds to wait for a pong before the peer is taken for dead (checked every quarter of
    #: the smaller of the two, by one sweep over all WebSockets).
    ping_timeout: float = 20.0
    #: Seconds between heartbeats on streaming responses (below common proxy idle timeouts),
    #: at most a quarter of it late (one sweep over all streams, as for the pings).
    heartbeat_interval: float = 20.0
    #: Seconds a long-poll request is held when there is nothing to send.
    longpoll_timeout: float = 25.0
    #: Seconds a polling client may stay away between polls before it counts as disconnected.
    poll_grace: float = 15.0
    #: Frames queued for a polling client before it is a slow consumer (close 4001).
    max_poll_frames: int = 10_000
    #: Bytes of an iframe document before it is recycled (the client opens a new one).
    iframe_max_bytes: int = 256 * 1024
    #: Seconds to wait for the peer's Close after sending ours; a streaming or TCP client
    #: that has not taken its close by then (a slow consumer) is dropped.
    close_timeout: float = 5.0
    #: Seconds in-flight work gets to finish at shutdown before connections are dropped.
    shutdown_timeout: float = 10.0
    #: Python's cyclic garbage collector, set by `serve` for the whole process: collections of
    #: the middle generation between two full ones (the interpreter's default is 10; 0 leaves
    #: the interpreter's setting). A full collection walks every live object, dozens per
    #: connection: at 10,000 long-poll clients the default spent a third of the CPU there.
    gc_full_every: int = 100
    #: Seconds a pushwire.v1 session survives without a connection, for the client to resume it.
    session_grace: float = 60.0
    #: Direct messages kept per user (its inbox), for its sessions to recover what they
    #: missed; older ones are lost (a `gap` tells a client that asks for them).
    inbox_size: int = 1000
    #: Bytes of direct messages kept per user's inbox (the oldest go first).
    inbox_bytes: int = 1024 * 1024
    #: Seconds a direct message stays in its user's inbox; an inbox idle this long is
    #: dropped (Redis: its keys expire).
    inbox_ttl: float = 86400.0
    #: Users whose inbox the memory broker remembers (least recently used forgotten first:
    #: a forgotten inbox comes back with a new epoch, so its user is told what is lost).
    max_inboxes: int = 100_000
    #: Messages kept per channel for recovery (memory broker, and each Redis stream).
    history_size: int = 1000
    #: Seconds a message stays in a channel's history (older ones are trimmed; memory and Redis).
    history_ttl: float = 3600.0
    #: Bytes of data kept per channel's history, the oldest messages going first (memory and
    #: Redis; a message larger than it is delivered but not kept). 0: no byte bound.
    history_bytes: int = 1024 * 1024
    #: Bytes of history the memory broker keeps across all channels, data plus 176 bytes per
    #: message; the oldest messages of any channel go first. 0: half of `memory_budget`.
    history_total_bytes: int = 0
    #: The server-wide budget of buffered bytes: write buffers of every connection,
    #: unfinished requests and frames, poll queues, history and inboxes of the memory broker
    #: (docs/protocol.md "Memory budget"). Over it, history is trimmed oldest-first and the
    #: greediest connections are closed (4001) until the total is back under 90% of it.
    #: 0: a quarter of the machine's memory (or of the cgroup's limit), at least 64 MiB.
    memory_budget: int = 0
    #: Seconds between two counts of the memory budget (each walks every connection; with
    #: very many, counts are spaced further so that they take at most 2% of the CPU).
    memory_budget_interval: float = 1.0
    #: Seconds a publish's idempotency key is remembered (in the broker, so on every node): a
    #: publish repeated with the same key and channel within it gets the first one's position
    #: and publishes nothing. Clients retry within it.
    idempotency_ttl: float = 300.0
    #: Idempotency keys the memory broker remembers at most (the oldest forgotten first).
    max_idempotency_keys: int = 100_000
    #: Publishes a process queues for Redis; one more is refused with 503 / `unavailable`.
    broker_max_pending: int = 10_000
    #: Seconds to connect to Redis, for a command's answer, and for a subscription's confirmation.
    broker_timeout: float = 5.0
    #: First wait before reconnecting to Redis, seconds; doubles per failure up to the max.
    broker_reconnect_min: float = 0.1
    #: Longest wait between reconnection attempts to Redis, seconds.
    broker_reconnect_max: float = 5.0
    #: (Redis Cluster) Seconds between two reads of a Redis Cluster's slot map at
    #: least: it is read again when a master answers MOVED or ASK or a connection to one is
    #: lost, and this often while a master stays unreachable (a replica may replace it).
    broker_cluster_refresh: float = 1.0
    #: Seconds a presence entry lives without being refreshed: its node refreshes it every
    #: third of this, so a node that dies without saying goodbye has its members' `leave`
    #: announced within 4/3 of it (the entry expires, the next sweep removes it).
    presence_ttl: float = 30.0
    #: Presence members one Redis script call touches at most (joins, leaves and refreshes
    #: are sent this many per call, expired members swept this many at a time), and changes
    #: one presence message between nodes carries: no script holds Redis for long.
    presence_batch: int = 500
    #: Members listed in one presence snapshot; over it the snapshot says `truncated` and
    #: lists this many (the count is always the whole channel's).
    presence_max_members: int = 200
    #: Bytes of the JSON of the public info a connect handler attaches to a session
    #: (error `too_large`, close 4100 when over).
    max_presence_info: int = 1024

    # With a Redis broker, each session lives on its home node (the one that opened it) and
    # any other node forwards that session's polls and sends there (docs/scaling.md).
    #: Seconds a node's liveness key in Redis lives unless refreshed (every third of it): a
    #: node silent that long counts as dead, and polls of its sessions get 410.
    node_ttl: float = 10.0
    #: Seconds a forwarded poll or send waits for the home node's answer, beyond
    #: longpoll_timeout for a long-poll (503, retryable, when over).
    forward_timeout: float = 5.0
    #: Forwarded requests in flight per node, sent and served each (503 when over).
    max_forwarded: int = 1000
    #: (Redis) Sessions handed over to another node whose old id still leads there, each for
    #: `session_grace` (a client whose welcome was lost comes back with the old id); beyond
    #: it the oldest is forgotten first, and its client's resumption counts as expired.
    max_moved_sessions: int = 100_000
    #: Seconds a resuming node waits for the session's home node to hand it over (then the
    #: session counts as expired, as when its home node is dead).
    handover_timeout: float = 5.0

    # Operations (docs/operations.md).
    #: Log level of every process (workers included): debug, info, warning or error.
    log_level: str = "info"
    #: "text" (one human line per record) or "json" (one JSON object per line).
    log_format: str = "text"
    #: One log line per HTTP request answered (logger `pushwire.access`; never a query string,
    #: token or session secret). Off by default: a long-poll client makes one a request.
    access_log: bool = False

    # The admin page (docs/operations.md "Admin page").
    #: Serve the admin page at `/admin`: live connections, channels, presence and message
    #: rates, and a publish box. Off: `/admin` is 404. Logging in needs the API key (or an
    #: admin JWT: a connection token with `"admin": true`).
    admin: bool = False
    #: Seconds between two of the figures the server publishes to the admin page.
    admin_interval: float = 1.0
    #: Seconds an admin token (handed to a page that showed the API key) is valid; the page
    #: fetches a new one before then, while it still holds the key.
    admin_token_ttl: float = 3600.0
    #: Channels listed in one set of figures (the busiest first); the others are counted.
    admin_max_channels: int = 50
    #: Users listed per channel in one set of figures (presence); the others are counted.
    admin_max_members: int = 20
