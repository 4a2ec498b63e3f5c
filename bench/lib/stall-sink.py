#!/usr/bin/env python3
"""A stalling HTTP/1.x upstream for bench/dispatch.sh's memory measurement.

The TLS sink (stock nginx) proxies the "slow" hub to this server, which
holds every push until it is released, so that a known number of pushes
stay in flight in the module's worker.

    stall-sink.py PORT [MAX_HOLD_SECONDS]

    GET /count     {"held": N, "total": N, "answered": N}  (answered at once)
    GET /release   answers every held push (201) and every later one at once
    GET /hold      holds again from now on
Anything else is a push: read, held (at most MAX_HOLD_SECONDS), answered 201.
"""
import asyncio, json, sys

PORT = int(sys.argv[1])
MAX_HOLD = float(sys.argv[2]) if len(sys.argv) > 2 else 50.0
state = {"held": 0, "total": 0, "answered": 0}
release = asyncio.Event()


async def handle(reader, writer):
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        length = 0
        for h in head.split(b"\r\n")[1:]:
            k, _, v = h.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v.strip())
        if length:
            await reader.readexactly(length)
        method, path = line.split(" ")[:2]
        if method == "GET" and path in ("/count", "/release", "/hold"):
            if path == "/release":
                release.set()
            elif path == "/hold":
                release.clear()
            body = json.dumps(state).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                         % (len(body), body))
        else:
            state["total"] += 1
            state["held"] += 1
            try:
                await asyncio.wait_for(release.wait(), MAX_HOLD)
            except asyncio.TimeoutError:
                pass
            state["held"] -= 1
            state["answered"] += 1
            writer.write(b"HTTP/1.1 201 Created\r\nTrackingId: stall\r\n"
                         b"Content-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", PORT, backlog=4096)
    async with server:
        await server.serve_forever()


asyncio.run(main())
