"""A Python-client subscriber in a process of its own (`Plan.remote`, the bench's long runs).

With the proxies, the publishers and six subscribers in one event loop, the harness used a
whole core and published below the asked rate; a subscriber in its own process (and event
loop) runs beside it. The child runs a `PythonSubscriber` and writes what its client yields
as JSON lines on its stdout, a batch every `FLUSH_EVERY` seconds; the parent's
`RemoteSubscriber` puts them into the same `Record`s as an in-process subscriber's, so the
ledger checks exactly the same thing.

    python -m tests.chaos.remote '{"label": …, "url": …, "transports": […], "user": …,
                                   "channel": …}'

Its first line is the subscription's start; it stops (its client closed, everything
flushed, a last line with its state) when its stdin says `stop` or closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Any, Final

from .ledger import Got, Hole, Record, Stopped
from .subscribers import PythonSubscriber, Subscriber

__all__ = ["RemoteSubscriber"]

FLUSH_EVERY: Final = 0.1
#: A subscriber that received nothing for this long has its tasks' stacks and its client's
#: state written to stderr (once per silence): what to look at when it stopped for good.
SILENCE_DUMP: Final = 20.0
START_TIMEOUT: Final = 30.0
STOP_TIMEOUT: Final = 15.0
ROOT: Final = Path(__file__).resolve().parents[2]


class RemoteSubscriber(Subscriber):
    """The parent's side: the child's lines into `record`, `direct`, `transports`,
    `failures`, `expired` as they come."""

    def __init__(
        self, label: str, url: str, transports: list[str], user: str | None = None
    ) -> None:
        super().__init__(label, user)
        self.spec = {"label": label, "url": url, "transports": transports, "user": user}
        self.process: asyncio.subprocess.Process | None = None
        self._reading: asyncio.Task[None] | None = None
        self._state = f"{label}: (in a child process)"

    async def start(self, channel: str) -> None:
        spec = json.dumps({**self.spec, "channel": channel})
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.chaos.remote",
            spec,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 24,
        )
        assert self.process.stdout is not None
        async with asyncio.timeout(START_TIMEOUT):
            line = await self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.label}: the subscriber process did not start")
        first = json.loads(line)
        self.record.start = (first["start"][0], first["start"][1])
        if first["inbox"] is not None:
            self.direct.start = (first["inbox"][0], first["inbox"][1])
        self._reading = asyncio.create_task(self._read(self.process.stdout))

    async def _read(self, stdout: asyncio.StreamReader) -> None:
        while line := await stdout.readline():
            for entry in json.loads(line):
                self._take(entry)

    def _take(self, entry: list[Any]) -> None:
        kind = entry[0]
        if kind in ("m", "d"):
            record = self.record if kind == "m" else self.direct
            record.items.append(Got(entry[1], entry[2], entry[3], entry[4]))
        elif kind in ("g", "h"):
            record = self.record if kind == "g" else self.direct
            record.items.append(Hole(entry[1], (entry[2], entry[3]), (entry[4], entry[5])))
        elif kind == "f":
            self.failures.append(entry[1])
        elif kind == "x":
            self.record.stopped = Stopped(entry[1], (entry[2], entry[3]), entry[4])
        elif kind == "t":
            self.transports.add(entry[1])
        elif kind == "s":
            self._state = entry[1]
        elif kind == "e":
            self.expired = list(entry[1])

    def describe(self) -> str:
        return self._state

    async def stop(self) -> None:
        process = self.process
        if process is None:
            return
        assert process.stdin is not None
        with contextlib.suppress(OSError):
            process.stdin.write(b"stop\n")
            await process.stdin.drain()
            process.stdin.close()
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                if self._reading is not None:
                    await self._reading
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
        finally:
            if self._reading is not None:
                self._reading.cancel()
                await asyncio.gather(self._reading, return_exceptions=True)


class _Child:
    """The child's side: one `PythonSubscriber`, its new items out every FLUSH_EVERY."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.subscriber = PythonSubscriber(
            spec["label"], spec["url"], list(spec["transports"]), spec["user"]
        )
        self.sent = {"record": 0, "direct": 0, "failures": 0}
        self.transports: set[str] = set()
        self.stopped: Stopped | None = None

    def _write(self, payload: Any) -> None:
        sys.stdout.write(json.dumps(payload, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    def flush(self, *, final: bool = False) -> None:
        subscriber = self.subscriber
        out: list[list[Any]] = []
        for name, record, got, gap in (
            ("record", subscriber.record, "m", "g"),
            ("direct", subscriber.direct, "d", "h"),
        ):
            new = _items(record, self.sent[name], got, gap)
            self.sent[name] = len(record.items)
            out += new
        out += [["f", text] for text in subscriber.failures[self.sent["failures"] :]]
        self.sent["failures"] = len(subscriber.failures)
        stopped = subscriber.record.stopped
        if stopped is not None and stopped is not self.stopped:
            self.stopped = stopped
            out.append(["x", stopped.at, stopped.after[0], stopped.after[1], stopped.reason])
        out += [["t", t] for t in subscriber.transports - self.transports]
        self.transports |= subscriber.transports
        out.append(["s", subscriber.describe()])
        if final:
            out.append(["e", subscriber.expired])
        self._write(out)

    async def run(self) -> None:
        await self.subscriber.start(self.spec["channel"])
        start, inbox = self.subscriber.record.start, self.subscriber.direct.start
        self._write({"start": start, "inbox": inbox})
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        told = asyncio.create_task(reader.readline())
        seen, quiet_since, dumped = -1, loop.time(), False
        while not told.done():
            await asyncio.wait([told], timeout=FLUSH_EVERY)
            self.flush()
            count = len(self.subscriber.record.items) + len(self.subscriber.direct.items)
            if count != seen:
                seen, quiet_since, dumped = count, loop.time(), False
            elif not dumped and loop.time() - quiet_since > SILENCE_DUMP:
                dumped = True
                self.dump()
        await self.subscriber.stop()
        self.flush(final=True)

    def dump(self) -> None:
        """Every task's stack and the client's state, on stderr."""
        client = self.subscriber.client
        connection = client._connection
        lines = [
            f"=== {self.spec['label']}: silent for {SILENCE_DUMP:g} s: {self.subscriber.describe()}"
        ]
        lines.append(f"connection: {_fields(connection)}")
        transport = getattr(connection, "_transport", None)
        lines.append(f"transport {type(transport).__name__}: {_fields(transport)}")
        lines.append(f"subscriptions: {_fields(client._subscriptions)}")
        for task in asyncio.all_tasks():
            lines.append(f"--- {task!r}")
            for frame in task.get_stack(limit=30):
                code = frame.f_code
                lines.append(f"    {code.co_filename}:{frame.f_lineno} {code.co_name}")
        sys.stderr.write("\n".join(lines) + "\n")
        sys.stderr.flush()


def _fields(thing: object) -> str:
    try:
        return ", ".join(f"{k}={v!r}"[:300] for k, v in vars(thing).items())
    except TypeError:
        return repr(thing)[:300]


def _items(record: Record, done: int, got: str, gap: str) -> list[list[Any]]:
    out: list[list[Any]] = []
    for item in record.items[done:]:
        if isinstance(item, Got):
            out.append([got, item.at, item.epoch, item.offset, item.data])
        else:
            out.append([gap, item.at, *item.start, *item.end])
    return out


def main() -> None:
    child = _Child(json.loads(sys.argv[1]))
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a Linux dependency
        asyncio.run(child.run())
    else:
        uvloop.run(child.run())


if __name__ == "__main__":
    main()
