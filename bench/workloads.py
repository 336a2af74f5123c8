"""The workloads, written once over the Endpoint API; each returns plain numbers for the report."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any, Protocol

from .contenders import Endpoint, Keys, factories
from .server import bound_socket, rss_bytes, usage

# Anything on loopback that takes longer than this has stalled (e.g. a lost datagram in a
# contender that cannot recover); the workload is then reported as failed, not waited on.
STALL = 60.0


class ServerApi(Protocol):
    async def open(self, contender: str, client: tuple[str, int]) -> tuple[int, int]: ...
    async def close(self, ident: int) -> None: ...
    async def close_all(self) -> None: ...
    async def usage(self) -> dict[str, float]: ...


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


class Client:
    def __init__(self, server: ServerApi, contender: str, keys: Keys, same_process: bool) -> None:
        self.server = server
        self.contender = contender
        self.keys = keys
        self.same_process = same_process
        self.make = factories()[contender]

    async def connect(self, handshake: bool = True) -> tuple[int, Endpoint]:
        sock = bound_socket()
        ident, port = await self.server.open(self.contender, sock.getsockname())
        endpoint = await self.make(sock, ("127.0.0.1", port), "client", self.keys)
        if handshake:
            await endpoint.handshake()
        return ident, endpoint

    async def disconnect(self, ident: int, endpoint: Endpoint) -> None:
        endpoint.close()
        await self.server.close(ident)

    async def handshakes(self, count: int) -> dict[str, Any]:
        samples = []
        for _ in range(count):
            ident, endpoint = await self.connect(handshake=False)
            started = time.perf_counter()
            await endpoint.handshake()
            samples.append(time.perf_counter() - started)
            await self.disconnect(ident, endpoint)
        return {"p50_ms": percentile(samples, 0.5) * 1e3, "p99_ms": percentile(samples, 0.99) * 1e3}

    async def echo_rtt(self, count: int, size: int = 64) -> dict[str, Any]:
        ident, endpoint = await self.connect()
        payload = b"r" * size
        samples = []
        for _ in range(count):
            started = time.perf_counter()
            await endpoint.send(payload)
            await endpoint.recv()
            samples.append(time.perf_counter() - started)
        await self.disconnect(ident, endpoint)
        return {"p50_us": percentile(samples, 0.5) * 1e6, "p99_us": percentile(samples, 0.99) * 1e6}

    async def throughput(self, count: int, size: int, window: int, measure_lag: bool) -> dict[str, Any]:
        """``count`` echoes with ``window`` in flight; CPU per message on each side."""
        ident, endpoint = await self.connect()
        payload = b"t" * size
        batched = self.contender.endswith("_batch")
        lags: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            while not done.is_set():
                started = time.perf_counter()
                await asyncio.sleep(0.001)
                lags.append(time.perf_counter() - started - 0.001)

        server_before = await self.server.usage()
        client_before = usage()
        tick = asyncio.ensure_future(ticker()) if measure_lag else None
        started = time.perf_counter()
        if batched:
            await self._windowed_batches(endpoint, payload, count, window)
        else:
            await self._windowed(endpoint, payload, count, window)
        elapsed = time.perf_counter() - started
        done.set()
        if tick is not None:
            await tick
        client_cpu = usage()["cpu"] - client_before["cpu"]
        server_cpu = (await self.server.usage())["cpu"] - server_before["cpu"]
        await self.disconnect(ident, endpoint)
        result: dict[str, Any] = {
            "msgs_per_s": count / elapsed,
            "mb_per_s": count * size / elapsed / 1e6,
            "client_cpu_us_per_msg": client_cpu / count * 1e6,
            "server_cpu_us_per_msg": None if self.same_process else server_cpu / count * 1e6,
        }
        if measure_lag:
            result["lag_p99_ms"] = percentile(lags, 0.99) * 1e3 if lags else None
            result["lag_max_ms"] = max(lags) * 1e3 if lags else None
        return result

    @staticmethod
    async def _windowed(endpoint: Endpoint, payload: bytes, count: int, window: int) -> None:
        sent = 0
        for _ in range(min(window, count)):
            await endpoint.send(payload)
            sent += 1
        for _ in range(count):
            await endpoint.recv()
            if sent < count:
                await endpoint.send(payload)
                sent += 1

    @staticmethod
    async def _windowed_batches(endpoint: Endpoint, payload: bytes, count: int, window: int) -> None:
        sent = min(window, count)
        await endpoint.send_many([payload] * sent)
        received = 0
        while received < count:
            got = len(await endpoint.recv_many(window))
            received += got
            more = min(got, count - sent)
            if more:
                await endpoint.send_many([payload] * more)
                sent += more

    async def memory(self, count: int) -> dict[str, Any]:
        """Resident memory added per established connection, on each side."""
        warm = await self.connect()
        await self.disconnect(*warm)
        gc.collect()
        server_before = (await self.server.usage())["rss"]
        client_before = rss_bytes()
        opened: list[tuple[int, Endpoint]] = []
        chunk = 25
        for start in range(0, count, chunk):
            opened += await asyncio.gather(*(self.connect() for _ in range(min(chunk, count - start))))
        gc.collect()
        client_after = rss_bytes()
        server_after = (await self.server.usage())["rss"]
        for _, endpoint in opened:
            endpoint.close()
        await self.server.close_all()
        both = (client_after - client_before) / count / 1024
        if self.same_process:
            return {"client_kib": both / 2, "server_kib": None, "both_kib": both}
        return {
            "client_kib": both,
            "server_kib": (server_after - server_before) / count / 1024,
        }
