"""The Redis broker: many processes, one stream of offsets per channel.

Fan-out uses Redis pub/sub; offsets and history live in Redis, so every node sees the same
(epoch, offset) for a message. Each module owns one part, and says what it guarantees:

- broker.py: `RedisBroker`, the `Broker` (and `DirectBroker`) the hub uses; it starts and
  stops the parts below.
- inbound.py: what arrives on pub/sub, parsed and handed to the hub's callbacks.
- publisher.py: the publish queue and its sender task: channel publishes (the publish
  script) and direct messages, in one order; each `done` called exactly once.
- subscriber.py: the subscription connection: SUBSCRIBE confirmed before `subscribe`
  returns, the reader task, health PINGs, resubscription after a lost connection.
- history.py: positions and history (the read script), epochs.
- presence.py: the members of each channel, shared by every node, expiring with their node.
- nodes.py: `RedisNodes`, which nodes are alive and node-to-node sends (for
  `pushwire.routing`).
- health.py: what counts as a lost connection, the outage log, reconnection backoff.
- sharded.py: `ShardedBroker`, channels and users routed by hash slot over several
  `RedisBroker`s (the shards), and what this process subscribed, to move it.
- cluster.py: `RedisClusterBroker`, over the masters of a Redis Cluster, one shard per master
  (sharded pub/sub), following resharding and failover; topology.py reads the slot map.
- shards.py: `RedisShardsBroker`, over a fixed list of independent Redis servers.
- layout.py: every key and pub/sub name in Redis, and the form of what is stored and
  published there.
- scripts.py: running a Lua script for a batch in one round trip, through a SCRIPT FLUSH.

Guaranteed across the parts: every node delivers a channel's messages with the same
(epoch, offset), in offset order, offsets dense within an epoch (Redis runs the scripts one
at a time).

Not guaranteed:

- An order between processes publishing to one channel: Redis picks one, the same for all.
- Sentinel is not supported; the list of independent shards is fixed (shards.py).
"""

from .broker import RedisBroker
from .cluster import RedisClusterBroker
from .nodes import RedisNodes
from .shards import RedisShardsBroker
from .subscriber import ListenCallback

__all__ = ["ListenCallback", "RedisBroker", "RedisClusterBroker", "RedisNodes", "RedisShardsBroker"]
