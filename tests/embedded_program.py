"""An asyncio program that embeds pushwire's native server (`pushwire.Server`) and keeps
SIGINT for itself: on SIGINT it publishes once more, then leaves the server's block.
Run by tests/test_embed.py as `python -m tests.embedded_program`."""

from __future__ import annotations

import asyncio
import signal

import pushwire


async def main() -> None:
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()
    loop.add_signal_handler(signal.SIGINT, interrupted.set)
    hub = pushwire.Hub()
    async with pushwire.Server(hub, host="127.0.0.1", port=0) as server:
        print(f"serving {server.url}", flush=True)
        await interrupted.wait()
        message = await hub.publish("room", "the program's own SIGINT")
        print(f"published {message.offset}", flush=True)
    # Still the program's handler: the server installed none of its own.
    print(f"closed; handler kept: {loop.remove_signal_handler(signal.SIGINT)}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
