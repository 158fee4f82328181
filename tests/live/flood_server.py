"""A hostile WebSocket peer for the memory tests, run as its own process (so the test's memory
figures are the client's alone): ``python flood_server.py MODE`` prints its port, then serves
every connection with MODE ``flood`` (1 KiB text frames as fast as TCP takes them) or ``huge``
(one 64 MiB text frame, streamed without building it in memory)."""

from __future__ import annotations

import asyncio
import sys

from websockets.asyncio.server import serve

MiB = 1024 * 1024


async def flood(ws) -> None:
    frame = "x" * 1023 + "\n"
    try:
        while True:
            await ws.send(frame)
    except Exception:  # noqa: BLE001 - the client went away
        return


async def huge(ws) -> None:
    # fragments of one 64 MiB message: the client must refuse it once max_size is exceeded
    chunk = "y" * MiB
    try:
        await ws.send(chunk for _ in range(64))
        await ws.wait_closed()
    except Exception:  # noqa: BLE001
        return


async def main(mode: str) -> None:
    handler = {"flood": flood, "huge": huge}[mode]
    async with serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(port, flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
