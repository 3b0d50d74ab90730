"""A TCP proxy that delays every byte by a fixed time each way, as a WAN link would (the
bandwidth is not limited; order is kept). For benchmarks of MQTT over real links:

    python -m bench.delay_proxy --listen 18830 --target 127.0.0.1:1883 --delay-ms 20

Prints ``READY port=<port>`` once listening (``--listen 0`` picks a free port).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from simulators.cli import stop_on_signals


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def forward() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                break
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        writer.close()

    sender = asyncio.create_task(forward())
    try:
        while data := await reader.read(65536):
            queue.put_nowait((loop.time() + delay, data))
    except ConnectionError:
        pass
    finally:
        queue.put_nowait((0.0, b""))
        with contextlib.suppress(ConnectionError):
            await sender


async def serve(listen: int, host: str, port: int, delay: float) -> None:
    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            _pump(reader, upstream_writer, delay), _pump(upstream_reader, writer, delay)
        )

    server = await asyncio.start_server(connection, "127.0.0.1", listen)
    print(f"READY port={server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await stop_on_signals().wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=int, default=0)
    parser.add_argument("--target", required=True, help="host:port")
    parser.add_argument("--delay-ms", type=float, default=20.0, help="each way")
    args = parser.parse_args()
    host, _, port = args.target.rpartition(":")
    asyncio.run(serve(args.listen, host, int(port), args.delay_ms / 1000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
