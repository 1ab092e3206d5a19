"""A TCP proxy that adds a fixed delay to every HTTP request: the embedded S3 made as slow as cloud S3.

`python -m benchmarks.delay_proxy UPSTREAM_PORT DELAY_MS` listens on a free port of 127.0.0.1
(printed on its first line) and relays bytes both ways unchanged, so SigV4 signatures (which
cover the Host header) stay valid. A request is held DELAY_MS before it goes upstream: the first
bytes a client sends after the previous answer (or on a new connection) start a request; the
bytes that follow it, before the server answers, are its body. An interim `100 Continue` answer
is not the end of a request: the body that follows it is not delayed again. One asyncio loop
relays everything, so the proxy's own CPU stays small beside the clients it serves.

The Bench starts it in a process of its own (DelayProxy), so its CPU is apart from the systems measured.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

CHUNK = 256 * 1024


class Connection:
    """One client connection's state: whether the next bytes from the client start a new request."""

    def __init__(self):
        self.answered = True  # nothing outstanding: the next client bytes are a new request


async def relay_requests(reader, writer, state: Connection, delay: float) -> None:
    try:
        while data := await reader.read(CHUNK):
            if state.answered:
                state.answered = False
                await asyncio.sleep(delay)
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def relay_answers(reader, writer, state: Connection) -> None:
    try:
        while data := await reader.read(CHUNK):
            interim = data.startswith(b"HTTP/1.1 100 ") and data.endswith(b"\r\n\r\n") and data.count(b"\r\n\r\n") == 1
            if not interim:
                state.answered = True
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def serve(upstream_port: int, delay: float) -> None:
    async def handle(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        except OSError:
            client_writer.close()
            return
        state = Connection()
        await asyncio.gather(relay_requests(client_reader, server_writer, state, delay),
                             relay_answers(server_reader, client_writer, state), return_exceptions=True)

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


class DelayProxy:
    """The proxy in a child process; `url` is where clients send S3 requests instead."""

    def __init__(self, upstream_url: str, delay_ms: float):
        port = int(upstream_url.rsplit(":", 1)[1].split("/")[0])
        self.process = subprocess.Popen([sys.executable, "-m", "benchmarks.delay_proxy", str(port), str(delay_ms)],
                                        stdout=subprocess.PIPE, text=True)
        self.url = f"http://127.0.0.1:{int(self.process.stdout.readline())}"
        self.delay_ms = delay_ms

    def close(self) -> None:
        self.process.terminate()
        self.process.wait()


if __name__ == "__main__":
    try:
        asyncio.run(serve(int(sys.argv[1]), float(sys.argv[2]) / 1000))
    except KeyboardInterrupt:
        pass
