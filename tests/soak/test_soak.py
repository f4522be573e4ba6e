"""The soak, short (CI): a few hundred well-behaved subscribers on every transport under
steady publishing, beside slow readers, half-open requests, a reconnect storm and oversize
frames from another address. The long one is `python -m bench --workloads soak`
(docs/benchmarks.md)."""

from __future__ import annotations

import asyncio

from tests.soak.scenario import SoakPlan, soak

SHORT = SoakPlan(
    connections=400,
    seconds=40.0,
    rate=20.0,
    big_rate=4.0,
    big_size=256 * 1024,  # a slow reader's 4 MiB write buffer fills within seconds
    big_subscribers=5,
    clients=4,
    slow_readers=4,
    slow_reader_life=15.0,
    half_open=10,
    storm_rate=10.0,
    oversize=2,
    sample_every=2.0,
    settle=60.0,
)


def test_a_short_soak_loses_nothing_and_gives_back_what_the_abusers_took() -> None:
    report = asyncio.run(soak(SHORT))
    summary = report.summary()
    answers = report.abuse.answers
    assert report.server_alive, summary
    # The well-behaved subscribers: every message, once, and none of them closed.
    assert report.subscribers == SHORT.connections, summary
    assert report.published > SHORT.seconds * SHORT.rate * 0.5, summary
    assert report.lost == 0 and report.duplicates == 0, summary
    assert report.gaps == 0 and report.failures == 0, summary
    assert report.closed_by_server == [], report.closed_by_server[:5]
    # Each abuser met its bound: slow readers closed 4001 (or dropped after the close's
    # grace: `eof` or `reset`, their close frame freed unsent), half-open heads timed out
    # with 408, oversize frames closed 1009, and the storm's handshakes all answered.
    slow = {k: v for k, v in answers.items() if k.startswith("slow_reader")}
    ended = {"slow_reader close 4001", "slow_reader reset", "slow_reader eof"}
    short = "slow_reader life cut short by the end"
    assert slow and set(slow) <= {*ended, short}, answers
    # The server's own count agrees: it closed a slow consumer at least once per cut life.
    cut = sum(v for k, v in slow.items() if k in ended)
    assert report.server_slow_consumer_closes >= cut > 0, summary
    assert answers["half_open HTTP/1.1 408 Request Timeout"] > 0, answers
    assert answers["oversize close 1009"] > 0, answers
    assert "oversize open" not in answers, answers
    assert answers["reconnect_storm 101"] > 0, answers
    # What they held is given back: no descriptor left behind, memory not run away.
    assert report.fds_end <= report.fds_start, summary
    assert report.rss_end < report.rss_start + 100 * 1024 * 1024, summary
