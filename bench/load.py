"""A closed-loop load generator on aiohttp: N clients, each sending its next request as soon
as the last one ends, for a fixed time.

RPS is the sum of the clients' rates, each client's rate being its completed requests over
the time from its first request's start to its last one's end: the throughput with all N
clients busy. (Completed requests over the whole run's time would also count the tail, when
clients stop one by one; with requests of seconds in a run of a few, that tail swings the
figure by a quarter on a few percent of latency.)"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import orjson


@dataclass(frozen=True, kw_only=True)
class Target:
    """Where requests go: an OpenAI-compatible base URL, or a worker called directly."""

    name: str
    urls: tuple[str, ...]
    direct: bool = False
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class Samples:
    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    chunks: int = 0
    errors: int = 0
    rates: list[float] = field(default_factory=list)  # per client: requests per second


@dataclass(frozen=True)
class Result:
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    chunks_per_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def _request(target: Target, mode: str, model: str, url: str, i: int,
             tokens: int) -> tuple[str, bytes]:
    if target.direct:
        if mode == "embed":
            return url + "/worker_get_embeddings", orjson.dumps(
                {"model": model, "input": [f"text {i} {j}" for j in range(4)]})
        return url + "/worker_generate_stream", orjson.dumps(
            {"model": model, "prompt": f"USER: hello {i} ASSISTANT:", "temperature": 0.7,
             "top_p": 1.0, "top_k": -1, "presence_penalty": 0.0, "frequency_penalty": 0.0,
             "max_new_tokens": tokens, "echo": False, "stop": []})
    if mode == "embed":
        return url + "/v1/embeddings", orjson.dumps(
            {"model": model, "input": [f"text {i} {j}" for j in range(4)]})
    return url + "/v1/chat/completions", orjson.dumps(
        {"model": model, "max_tokens": tokens, "stream": mode == "stream",
         "messages": [{"role": "user", "content": f"hello {i}"}]})


async def _one(session: aiohttp.ClientSession, target: Target, mode: str, url: str,
               body: bytes, samples: Samples) -> bool:
    """One request; whether it succeeded."""
    started = time.perf_counter()
    first: float | None = None
    chunks = 0
    async with session.post(url, data=body, headers={"content-type": "application/json",
                                                     **dict(target.headers)}) as response:
        if response.status != 200:
            await response.read()
            samples.errors += 1
            return False
        if mode == "stream" or (target.direct and mode != "embed"):
            async for piece in response.content.iter_any():
                if first is None and piece.strip(b"\0\n"):
                    first = time.perf_counter()
                chunks += piece.count(b"data: ") if not target.direct else piece.count(b"\0")
        else:
            await response.read()
            chunks = 1
    ended = time.perf_counter()
    samples.latencies.append(ended - started)
    if mode == "stream" and first is not None:
        samples.ttfts.append(first - started)
    samples.chunks += chunks
    return True


async def run(target: Target, *, mode: str, model: str, concurrency: int, seconds: float,
              tokens: int = 32) -> Result:
    samples = Samples()
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        deadline = time.perf_counter() + seconds
        counter = iter(range(10**9))

        async def client(k: int) -> None:
            url = target.urls[k % len(target.urls)]
            began = time.perf_counter()
            mine = 0
            while time.perf_counter() < deadline:
                request_url, body = _request(target, mode, model, url, next(counter), tokens)
                try:
                    mine += await _one(session, target, mode, request_url, body, samples)
                except (aiohttp.ClientError, TimeoutError):
                    samples.errors += 1
            samples.rates.append(mine / (time.perf_counter() - began))

        started = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(concurrency)))
        elapsed = time.perf_counter() - started
    count = len(samples.latencies)
    return Result(requests=count, errors=samples.errors, seconds=round(elapsed, 2),
                  rps=sum(samples.rates), p50_ms=_pct(samples.latencies, 0.5),
                  p99_ms=_pct(samples.latencies, 0.99),
                  ttft_p50_ms=_pct(samples.ttfts, 0.5) if samples.ttfts else None,
                  ttft_p99_ms=_pct(samples.ttfts, 0.99) if samples.ttfts else None,
                  chunks_per_s=samples.chunks / elapsed)


def median_result(results: list[Result]) -> Result:
    """The run with the median RPS (so a row's figures come from one run)."""
    ordered = sorted(results, key=lambda r: r.rps)
    return ordered[len(ordered) // 2]


__all__ = ["Result", "Target", "median_result", "run", "statistics"]
