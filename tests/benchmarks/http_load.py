"""Keep-alive HTTP/1.1 load clients for the service benchmarks (egress_api, portal): raw asyncio
streams, so the client costs far less than the server it measures."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any


async def fetch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, headers: str) -> int:
    """GET `path` with the extra `headers` lines ("Name: value\\r\\n" each); the response status."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return int(head.split(b" ", 2)[1])


async def client(
    port: int,
    work: Callable[[], str | None],
    out: list[float],
    errors: list[str],
    headers: str | Callable[[str], str],
) -> None:
    """One keep-alive connection issuing requests back to back until `work` returns None; `headers`
    are the same for every request, or a function of the path."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while (path := work()) is not None:
            extra = headers(path) if callable(headers) else headers
            t0 = time.perf_counter()
            status = await fetch(reader, writer, path, extra)
            out.append(time.perf_counter() - t0)
            if status != 200:
                errors.append(f"{status} {path}")
    finally:
        writer.close()


def summarise(latencies: list[float], errors: list[str], elapsed: float) -> dict[str, Any]:
    latencies.sort()
    n = len(latencies)
    return {
        "requests": n,
        "errors": len(errors),
        "seconds": round(elapsed, 2),
        "throughput_rps": round(n / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[min(n - 1, int(n * 0.99))] * 1000, 2),
    }
