"""The echo side: opens one endpoint per request and echoes every message back. In two-process
mode it runs in its own process behind a JSON-lines control connection (``RemoteServer``)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import socket
import time
from typing import Any

from .contenders import Endpoint, Keys, factories

ECHO_BATCH = 64


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def usage() -> dict[str, float]:
    return {"cpu": time.process_time(), "rss": float(rss_bytes())}


def bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


class Server:
    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self.ids = itertools.count(1)
        self.endpoints: dict[int, tuple[Endpoint, asyncio.Task[None]]] = {}

    async def open(self, contender: str, client: tuple[str, int]) -> tuple[int, int]:
        """A new server endpoint for ``client``; returns (id, its port)."""
        sock = bound_socket()
        port = sock.getsockname()[1]
        endpoint = await factories()[contender](sock, client, "server", self.keys)
        ident = next(self.ids)
        task = asyncio.ensure_future(self._echo(endpoint, contender.endswith("_batch")))
        self.endpoints[ident] = (endpoint, task)
        return ident, port

    async def _echo(self, endpoint: Endpoint, batch: bool) -> None:
        # Ends when the peer closes (or the endpoint is closed here).
        with contextlib.suppress(Exception):
            await endpoint.handshake()
            if batch:
                while True:
                    await endpoint.send_many(await endpoint.recv_many(ECHO_BATCH))
            else:
                while True:
                    await endpoint.send(await endpoint.recv())

    async def close(self, ident: int) -> None:
        endpoint, task = self.endpoints.pop(ident)
        endpoint.close()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task

    async def close_all(self) -> None:
        for ident in list(self.endpoints):
            await self.close(ident)

    async def usage(self) -> dict[str, float]:
        return usage()


class RemoteServer:
    """The same methods as ``Server``, over the control connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.lock = asyncio.Lock()

    @classmethod
    async def connect(cls, port: int) -> RemoteServer:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def _call(self, **request: Any) -> Any:
        async with self.lock:
            self.writer.write(json.dumps(request).encode() + b"\n")
            reply = json.loads(await self.reader.readline())
        if "error" in reply:
            raise RuntimeError(f"server: {reply['error']}")
        return reply["result"]

    async def open(self, contender: str, client: tuple[str, int]) -> tuple[int, int]:
        ident, port = await self._call(op="open", contender=contender, client=list(client))
        return int(ident), int(port)

    async def close(self, ident: int) -> None:
        await self._call(op="close", id=ident)

    async def close_all(self) -> None:
        await self._call(op="close_all")

    async def usage(self) -> dict[str, float]:
        result: dict[str, float] = await self._call(op="usage")
        return result


async def serve_control(keys: Keys) -> None:
    """Runs the server behind a control port (printed on stdout) until stdin closes."""
    server = Server(keys)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            request = json.loads(line)
            try:
                op = request["op"]
                if op == "open":
                    result: Any = await server.open(request["contender"], tuple(request["client"]))
                elif op == "close":
                    await server.close(request["id"])
                    result = None
                elif op == "close_all":
                    await server.close_all()
                    result = None
                else:
                    result = await server.usage()
                reply = {"result": result}
            except Exception as e:
                reply = {"error": f"{type(e).__name__}: {e}"}
            writer.write(json.dumps(reply).encode() + b"\n")
        writer.close()

    control = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(control.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    # The parent closes our stdin when it is done (or dies).
    await loop.run_in_executor(None, os.read, 0, 1)
    control.close()
    await server.close_all()
