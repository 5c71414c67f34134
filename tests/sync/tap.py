"""A TCP tap between a key host and its key server: logs every byte, and can cut the link.

    python -m tests.sync.tap --listen 0.0.0.0:8443 --to 127.0.0.1:8080 --log tap.bin \
        [--cut-at updating]

Each chunk goes to the log as ``<direction byte> <4-byte length> <bytes>``
(``>`` host to server, ``<`` server to host), so a test reads back exactly
what crossed the wire (``read_log``) and, with ``websocket_payloads``, the
frames' payloads unmasked. With ``--cut-at MARKER`` the tap cuts the first
connection in the middle of a sync: once MARKER has gone from the server to
the host, the host's next bytes (its answer to the script that followed) are
dropped and both sockets closed, as a link that died at that moment would
leave things. Later connections pass untouched. Prints ``ready`` once bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import struct
import sys
from pathlib import Path


class Tap:
    def __init__(self, to: tuple[str, int], log: Path, cut_at: bytes | None) -> None:
        self.to, self.log, self.cut_at = to, log, cut_at
        self.out = open(log, "ab")

    def record(self, direction: bytes, data: bytes) -> None:
        self.out.write(direction + struct.pack(">I", len(data)) + data)
        self.out.flush()

    async def handle(self, host_r: asyncio.StreamReader, host_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(*self.to)
        armed = asyncio.Event()
        cut = self.cut_at
        self.cut_at = None  # only the first connection is cut

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, way: bytes) -> None:
            seen = b""
            while data := await src.read(65536):
                if way == b">" and armed.is_set():
                    self.record(b"x", data)  # dropped: the link died here
                    raise ConnectionAbortedError
                self.record(way, data)
                dst.write(data)
                await dst.drain()
                seen = (seen + data)[-4096:]
                if way == b"<" and cut is not None and cut in seen:
                    armed.set()

        tasks = [asyncio.ensure_future(pump(host_r, server_w, b">")),
                 asyncio.ensure_future(pump(server_r, host_w, b"<"))]  # fmt: skip
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        for writer in (host_w, server_w):
            with contextlib.suppress(OSError):
                writer.close()


def read_log(path: Path) -> list[tuple[str, bytes]]:
    data, out, i = path.read_bytes(), [], 0
    while i < len(data):
        (size,) = struct.unpack(">I", data[i + 1 : i + 5])
        out.append((chr(data[i]), data[i + 5 : i + 5 + size]))
        i += 5 + size
    return out


def websocket_payloads(stream: bytes) -> list[bytes]:
    """The payloads of the WebSocket frames in one direction's bytes, after the HTTP upgrade."""
    _, _, rest = stream.partition(b"\r\n\r\n")
    payloads, i = [], 0
    while i + 2 <= len(rest):
        second = rest[i + 1]
        size, i = second & 0x7F, i + 2
        if size == 126:
            size, i = int.from_bytes(rest[i : i + 2], "big"), i + 2
        elif size == 127:
            size, i = int.from_bytes(rest[i : i + 8], "big"), i + 8
        mask = b""
        if second & 0x80:
            mask, i = rest[i : i + 4], i + 4
        body = rest[i : i + size]
        i += size
        payloads.append(bytes(b ^ mask[n % 4] for n, b in enumerate(body)) if mask else body)
    return payloads


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", required=True)
    parser.add_argument("--to", required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--cut-at")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    to_host, _, to_port = args.to.rpartition(":")
    cut = args.cut_at.encode() if args.cut_at else None
    tap = Tap((to_host, int(to_port)), args.log, cut)
    server = await asyncio.start_server(tap.handle, host, int(port))
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(sys.argv[1:]))
