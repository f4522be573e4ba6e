"""Peer servers the benchmark runs against pushwire, each in its documented, idiomatic form.

Every script takes `--port P`, serves on 127.0.0.1 and offers the same three things:
`/fanout` (every message received is sent to every connected client), `/echo` (every message
comes back to its sender), and, where the peer has one, an SSE or polling endpoint fed by the
messages sent to `/fanout`. Socket.IO peers use events instead of paths: `pub` (to room
`bench`, which every client joins on connect) and `echo`.
"""
