"""What a published message costs Redis: one Redis against a Redis Cluster of three masters
and three independent Redis shards.

One process runs brokers of the same kind: a publisher and `--nodes` subscribers (standing for
as many pushwire nodes), each subscribed to `--channels` channels; the publisher publishes
`--messages` 64-byte messages round robin over the channels (all queued at once: batches of up
to `max_batch` per round trip, per master), and the run ends when every subscriber has every
one. Measured per run: messages per second (publish to delivery), redis-server CPU per message
(summed over every master, read from /proc), the busiest redis-server's CPU per message (the
bottleneck: what bounds the messages per second the deployment can take, one core per
redis-server, visible even when the servers share the machine's cores), and this process's CPU per
message (every broker). Comparing `--nodes 1` and `--nodes 4` gives what each further
subscribed node costs Redis per message (one push). The redis-servers are the benchmark's own
(free loopback ports, no persistence, emptied before each run, stopped by PID at the end); runs
alternate between the backends.

    PYTHONPATH=$PWD/src:$PWD python -m bench.redis_ops --messages 20000 --channels 100 --runs 3
    PYTHONPATH=$PWD/src:$PWD python -m bench.redis_ops --nodes 4 …
    PYTHONPATH=$PWD/src:$PWD python -m bench.redis_ops --channels 1000 --backends one,shards
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from pushwire.broker.redis import RedisBroker, RedisClusterBroker, RedisShardsBroker
from pushwire.message import Message

from .harness import cpu_seconds
from .redis_cluster import BenchCluster
from .redis_fanout import RedisServer

ONE = "one Redis (redis://)"
CLUSTER = "Redis Cluster, 3 masters (redis+cluster://)"
SHARDS = "3 independent Redis (redis+shards://)"
BACKENDS = {"one": ONE, "cluster": CLUSTER, "shards": SHARDS}


def _redis_cpu(pids: list[int]) -> list[float]:
    return [cpu_seconds(pid) for pid in pids]


def _broker(url: str) -> RedisBroker | RedisClusterBroker | RedisShardsBroker:
    if url.startswith("redis+shards://"):
        return RedisShardsBroker(
            url, make_shard=lambda address: RedisBroker(address, max_pending=1_000_000)
        )
    if url.startswith("redis+cluster://"):

        def shard(address: str) -> RedisBroker:
            return RedisBroker(address, sharded=True, max_pending=1_000_000)

        return RedisClusterBroker(url, make_shard=shard)
    return RedisBroker(url, max_pending=1_000_000)


async def _run(
    url: str, pids: list[int], messages: int, channels: int, nodes: int
) -> dict[str, float]:
    publisher = _broker(url)
    subscribers = [_broker(url) for _ in range(nodes)]
    received = 0
    done = asyncio.Event()

    def deliver(_message: Message) -> None:
        nonlocal received
        received += 1
        if received == messages * nodes:
            done.set()

    await publisher.start()
    for subscriber in subscribers:
        subscriber.attach(deliver)
        await subscriber.start()
    try:
        names = [f"room{i}" for i in range(channels)]
        for subscriber in subscribers:
            for name in names:
                await subscriber.subscribe(name)
        data = "x" * 64
        redis_before, own_before = _redis_cpu(pids), time.process_time()
        began = time.perf_counter()
        for i in range(messages):
            publisher.publish(names[i % channels], data)
        await asyncio.wait_for(done.wait(), 300)
        elapsed = time.perf_counter() - began
        each = [
            after - before for after, before in zip(_redis_cpu(pids), redis_before, strict=True)
        ]
        own_cpu = time.process_time() - own_before
    finally:
        await publisher.close()
        for subscriber in subscribers:
            await subscriber.close()
    return {
        "rate": messages / elapsed,
        "redis_us": sum(each) / messages * 1e6,
        "busiest_us": max(each) / messages * 1e6,
        "pushwire_us": own_cpu / messages * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--channels", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=1, help="subscribing brokers")
    parser.add_argument(
        "--backends", default="one,cluster,shards", help="of one, cluster, shards (in turn)"
    )
    args = parser.parse_args()
    chosen = args.backends.split(",")
    logs = Path(tempfile.mkdtemp(prefix="bench-redis-ops-"))
    one = RedisServer(logs / "redis-server.log")
    cluster: BenchCluster | None = None
    shards: list[RedisServer] = []
    try:
        backends = []
        if "one" in chosen:
            backends.append((ONE, one.url, one.pids, one.flush))
        if "cluster" in chosen:
            cluster = BenchCluster(logs)
            backends.append((CLUSTER, cluster.url, cluster.pids, cluster.flush))
        if "shards" in chosen:
            shards = [RedisServer(logs / f"redis-shard{i}.log") for i in range(3)]
            url = "redis+shards://" + ",".join(f"127.0.0.1:{s.port}" for s in shards)
            pids = [s.process.pid for s in shards]

            def flush_shards() -> None:
                for shard in shards:
                    shard.flush()

            backends.append((SHARDS, url, pids, flush_shards))
        results: dict[str, list[dict[str, float]]] = {name: [] for name, *_ in backends}
        for index in range(args.runs):
            for name, url, pids, flush in backends:
                flush()
                result = asyncio.run(_run(url, pids, args.messages, args.channels, args.nodes))
                results[name].append(result)
                print(
                    f"run {index + 1} {name}: {result['rate']:,.0f} messages/s, redis "
                    f"{result['redis_us']:.1f} µs/message (busiest {result['busiest_us']:.1f}), "
                    f"pushwire {result['pushwire_us']:.1f} µs/message",
                    flush=True,
                )
        print()
        print(
            f"{args.messages:,} messages of 64 bytes over {args.channels} channels, "
            f"{args.nodes} subscribing node(s), "
            f"medians of {args.runs} (min-max):"
        )
        print()
        print(
            "| broker | messages/s | redis-server CPU µs per message (all masters) "
            "| busiest redis-server's CPU µs per message | messages/s its core allows "
            "| pushwire CPU µs per message (every broker of the process) |"
        )
        print("|---|---|---|---|---|---|")
        for name, runs in results.items():
            cells = []
            for run in runs:
                run["ceiling"] = 1e6 / run["busiest_us"]
            for key, form in (
                ("rate", "{:,.0f}"),
                ("redis_us", "{:.1f}"),
                ("busiest_us", "{:.1f}"),
                ("ceiling", "{:,.0f}"),
                ("pushwire_us", "{:.1f}"),
            ):
                values = [run[key] for run in runs]
                median = statistics.median(values)
                cells.append(
                    f"{form.format(median)} ({form.format(min(values))}-{form.format(max(values))})"
                )
            print(f"| {name} | " + " | ".join(cells) + " |")
    finally:
        one.stop()
        if cluster is not None:
            cluster.stop()
        for shard in shards:
            shard.stop()


if __name__ == "__main__":
    main()
