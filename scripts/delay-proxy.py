"""A TCP proxy that holds what a client sends for a fixed delay before passing it on:
each request then waits that long more, as over a distant link. Used by
`scripts/bench scale` with BENCH_DELAY_MS; only the benchmark's own connections pass it.

    python3 scripts/delay-proxy.py LISTEN_PORT UPSTREAM_HOST:PORT DELAY_MS
"""

import asyncio
import sys


async def pipe(reader, writer, delay):
    try:
        while data := await reader.read(65536):
            if delay:
                await asyncio.sleep(delay)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def main():
    port, upstream, delay_ms = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    host, upstream_port = upstream.rsplit(":", 1)

    async def serve(client_reader, client_writer):
        server_reader, server_writer = await asyncio.open_connection(host, int(upstream_port))
        await asyncio.gather(
            pipe(client_reader, server_writer, delay_ms / 1000),
            pipe(server_reader, client_writer, 0),
        )

    server = await asyncio.start_server(serve, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


asyncio.run(main())
