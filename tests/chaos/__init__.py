"""The chaos suite: pushwire's delivery guarantees checked under injected faults.

- proxy.py: a loopback-only TCP proxy that injects faults between clients and the nodes
  (resets, truncated answers, stalls, black holes, a node down) and spreads connections
  over the nodes round-robin, without stickiness;
- schedule.py: the faults of a run, drawn from a seed (a failing run is replayed from its
  seed);
- ledger.py: what was published and what each subscriber got, and the rules a subscriber's
  record must satisfy (docs/delivery.md);
- cluster.py: redis-server, two `pushwire serve` nodes and the proxies, with node SIGKILL and
  restart and Redis restarts; publishers with sequence numbers;
- subscribers.py: subscribers on every transport, with the Python client and with
  pushwire.js in Chromium;
- scenario.py: one run (cluster, subscribers, publishers, schedule) and its report; the tests
  run short ones, `python -m bench --workloads chaos` long ones.
"""
