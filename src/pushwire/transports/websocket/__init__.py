"""The WebSocket transport (RFC 6455): everything it is on the server side.

- `handshake`: the opening handshake's checks and the 101 answer (sans-I/O);
- `protocol`: the open connection's frames in, messages and control events out (sans-I/O);
- `framing`: how hub events look as frames, made once per message and shared;
- `deflate`: permessage-deflate (RFC 7692): the negotiation, and compressed framings whose
  frames are made once per message too (sans-I/O);
- `connection`: the open WebSocket on a socket, the hub's `Transport` for its client, and
  the ping sweep.
"""
