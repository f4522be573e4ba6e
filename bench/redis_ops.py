"""What a published message costs Redis: one Redis against a Redis Cluster of three masters.

One process runs brokers of the same kind: a publisher and `--nodes` subscribers (standing for
as many pushwire nodes), each subscribed to `--channels` channels; the publisher publishes
`--messages` 64-byte messages round robin over the channels (all queued at once: batches of up
to `max_batch` per round trip, per master), and the run ends when every subscriber has every
one. Measured per run: messages per second (publish to delivery), redis-server CPU per message
(summed over every master, read from /proc), and this process's CPU per message (every
broker). Comparing `--nodes 1` and `--nodes 4` gives what each further subscribed node costs
Redis per message (one push). The redis-servers are the benchmark's own (free loopback ports,
no persistence, emptied before each run, stopped by PID at the end); runs alternate between
the two.

    PYTHONPATH=$PWD/src:$PWD python -m bench.redis_ops --messages 20000 --channels 100 --runs 3
    PYTHONPATH=$PWD/src:$PWD python -m bench.redis_ops --nodes 4 …
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from pushwire.broker.redis import RedisBroker, RedisClusterBroker
from pushwire.message import Message

from .harness import cpu_seconds
from .redis_cluster import BenchCluster
from .redis_fanout import RedisServer

ONE = "one Redis (redis://)"
CLUSTER = "Redis Cluster, 3 masters (redis+cluster://)"


def _redis_cpu(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


def _broker(url: str) -> RedisBroker | RedisClusterBroker:
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
        redis_cpu, own_cpu = _redis_cpu(pids) - redis_before, time.process_time() - own_before
    finally:
        await publisher.close()
        for subscriber in subscribers:
            await subscriber.close()
    return {
        "rate": messages / elapsed,
        "redis_us": redis_cpu / messages * 1e6,
        "pushwire_us": own_cpu / messages * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--channels", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=1, help="subscribing brokers")
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="bench-redis-ops-"))
    one = RedisServer(logs / "redis-server.log")
    cluster: BenchCluster | None = None
    try:
        cluster = BenchCluster(logs)
        backends = [
            (ONE, one.url, one.pids, one.flush),
            (CLUSTER, cluster.url, cluster.pids, cluster.flush),
        ]
        results: dict[str, list[dict[str, float]]] = {name: [] for name, *_ in backends}
        for index in range(args.runs):
            for name, url, pids, flush in backends:
                flush()
                result = asyncio.run(_run(url, pids, args.messages, args.channels, args.nodes))
                results[name].append(result)
                print(
                    f"run {index + 1} {name}: {result['rate']:,.0f} messages/s, redis "
                    f"{result['redis_us']:.1f} µs/message, pushwire {result['pushwire_us']:.1f} "
                    "µs/message",
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
            "| pushwire CPU µs per message (every broker of the process) |"
        )
        print("|---|---|---|---|")
        for name, runs in results.items():
            cells = []
            for key, form in (
                ("rate", "{:,.0f}"),
                ("redis_us", "{:.1f}"),
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


if __name__ == "__main__":
    main()
