"""Fencing the slots of a lost Redis Cluster master: their channels start a new epoch.

Redis replicates asynchronously. A master killed before its replica had its last writes
leaves a promoted replica whose channels are behind: the lost messages' offsets would be
handed out again, in the same epoch, to the next messages, and a node that received the
lost ones would take the new ones for messages it has. So each slot has a lineage key
(`prefix{tag}:lineage`, `tag` hashing to the slot) and each channel's and inbox's meta hash
remembers the lineage it was written under (`lineage`, absent: none). The publish script
(publisher.py) compares the two before it counts an offset: when they differ, the channel
starts over, a new epoch with an empty history, as after a Redis restart without
persistence; its subscribers get the same gap.

A node that follows a slot from a master it lost to another master (the old one does not
answer, or answers with another run id than when the node started using it: it was
restarted, and is empty) writes the new master's lineage for that slot there before it
publishes anything through the new master (cluster.py). The lineage names the promotion:
the new master's id and its config epoch (`cluster_my_epoch`, unique to each promotion in
a cluster), so every node that follows the same promotion writes the same value, and a
channel starts over once. A resharding or a `CLUSTER FAILOVER` keeps the old master
running: nothing is written, offsets go on.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from redis.asyncio import Redis
from redis.crc import key_slot

from .health import CONNECTION_ERRORS
from .topology import SLOTS

__all__ = ["fence", "lineage_key", "run_id"]

#: Where the lineage is kept on a single Redis or `redis+shards://` (never written there:
#: the publish script reads it as empty).
UNSHARDED: Final = "lineage"

_tags: list[str] = []


def _slot_tags() -> list[str]:
    """A hash tag for each slot (the first decimal number that hashes to it)."""
    if not _tags:
        found: list[str | None] = [None] * SLOTS
        missing, number = SLOTS, 0
        while missing:
            tag = str(number)
            slot = int(key_slot(tag.encode("ascii")))
            if found[slot] is None:
                found[slot] = tag
                missing -= 1
            number += 1
        _tags.extend(tag for tag in found if tag is not None)
    return _tags


def lineage_key(prefix: str, name: str, *, sharded: bool) -> str:
    """The lineage key of the slot of the key `name` (same slot, so one script reads both)."""
    if not sharded:
        return f"{prefix}{UNSHARDED}"
    slot = int(key_slot(name.encode("utf-8", "surrogatepass")))
    return f"{prefix}{{{_slot_tags()[slot]}}}:lineage"


async def fence(client: Redis, prefix: str, slots: Iterable[int]) -> str:
    """Write the lineage of the master `client` talks to for each of `slots` (one round
    trip after the master's id and epoch); the lineage written.

    Raises:
        redis.exceptions.ConnectionError: and the other `CONNECTION_ERRORS` (health.py).
    """
    myid = await client.execute_command("CLUSTER", "MYID")  # type: ignore[no-untyped-call]
    info = await client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
    text = info.decode() if isinstance(info, bytes) else str(info)
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    node = myid.decode() if isinstance(myid, bytes) else str(myid)
    lineage = f"{node}:{fields.get('cluster_my_epoch', '0').strip()}"
    tags = _slot_tags()
    pipe = client.pipeline(transaction=False)
    for slot in slots:
        pipe.set(f"{prefix}{{{tags[slot]}}}:lineage", lineage)
    await pipe.execute()
    return lineage


async def run_id(client: Redis) -> str | None:
    """The run id of the Redis `client` talks to (a new one each time it starts), or None
    when it does not answer."""
    try:
        server = await client.info("server")
    except CONNECTION_ERRORS:
        return None
    return str(server.get("run_id", ""))
