"""The scheduling cells of ``make bench``.

* fairness: a flood of slow requests on one model (200 at once, about 4.8 s each at its
  worker, whose dispatchers give it 5 at a time), then 10 requests in a row to another, idle
  model: their latency, against the same 10 requests without the flood.
* priority: one model's worker saturated by ``default`` streams from 32 clients, and 2 clients
  sending ``priority`` streams: each tier's time in the queue, from the dispatcher's own
  histogram (``mqgate_dispatcher_queued_seconds``, its p50 interpolated within buckets), and
  each tier's time to the first token as the clients see it.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

FLOOD_MODEL, IDLE_MODEL, PRIORITY_MODEL = "bench-flood", "bench-idle", "bench-priority"
FLOOD_REQUESTS, IDLE_REQUESTS = 200, 10
FLOOD_TOKENS, FLOOD_DELAY = 100, 0.048  # 4.8 s a request at the worker
PRIORITY_TOKENS, PRIORITY_DELAY = 10, 0.05  # half a second at the worker
PRIORITY_SLOTS = 4  # the priority model's worker runs this many at once
# what mqgate's dispatchers allow these workers (the bench's others take any number)
WORKER_LIMITS = f"{FLOOD_MODEL}=5,{PRIORITY_MODEL}={PRIORITY_SLOTS}"


def _chat(model: str, content: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


@dataclass(frozen=True)
class Route:
    """Where a target takes the flood's and the idle model's requests, and in what shape:
    OpenAI's chat completions, or a FastChat worker's own generate call."""

    flood_url: str
    idle_url: str
    direct: bool = False

    @classmethod
    def openai(cls, base: str) -> Route:
        url = base + "/v1/chat/completions"
        return cls(url, url)

    @classmethod
    def workers(cls, flood: str, idle: str) -> Route:
        return cls(flood + "/worker_generate_stream", idle + "/worker_generate_stream",
                   direct=True)

    def body(self, model: str, content: str) -> dict[str, Any]:
        if self.direct:
            return {"model": model, "prompt": f"USER: {content} ASSISTANT:", "temperature": 0.7,
                    "top_p": 1.0, "top_k": -1, "presence_penalty": 0.0,
                    "frequency_penalty": 0.0, "max_new_tokens": 512, "echo": False,
                    "stop": []}
        return _chat(model, content)


async def _timed(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> float:
    began = time.monotonic()
    response = await client.post(url, json=body)
    response.raise_for_status()
    return time.monotonic() - began


async def _idle_latencies(client: httpx.AsyncClient, route: Route) -> list[float]:
    return [await _timed(client, route.idle_url, route.body(IDLE_MODEL, f"idle {i}"))
            for i in range(IDLE_REQUESTS)]


async def _fairness(route: Route) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=FLOOD_REQUESTS + 10)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        alone = await _idle_latencies(client, route)
        flood = [asyncio.create_task(client.post(route.flood_url,
                                                 json=route.body(FLOOD_MODEL, f"flood {i}")))
                 for i in range(FLOOD_REQUESTS)]
        await asyncio.sleep(1.0)  # the flood is in: queued, or at its worker
        try:
            during = await _idle_latencies(client, route)
        finally:
            for task in flood:  # the clients leave: their jobs are cancelled
                task.cancel()
            await asyncio.gather(*flood, return_exceptions=True)
    return {"alone_p50_ms": statistics.median(alone) * 1000,
            "alone_max_ms": max(alone) * 1000,
            "flood_p50_ms": statistics.median(during) * 1000,
            "flood_max_ms": max(during) * 1000}


def fairness(targets: dict[str, Route]) -> dict[str, dict[str, Any]]:
    found = {}
    for name, route in targets.items():
        found[name] = result = asyncio.run(_fairness(route))
        result["max_over_alone"] = result["flood_max_ms"] / result["alone_p50_ms"]
        print(f"  fairness {name}: idle model p50/max {result['alone_p50_ms']:.0f}/"
              f"{result['alone_max_ms']:.0f} ms alone, {result['flood_p50_ms']:.0f}/"
              f"{result['flood_max_ms']:.0f} ms beside the flood", flush=True)
    return found


async def _stream(client: httpx.AsyncClient, url: str, tier: str, i: int) -> float:
    began = time.monotonic()
    body = _chat(PRIORITY_MODEL, f"{tier} {i}", stream=True, service_tier=tier)
    ttft: float | None = None
    async with client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():  # read to the end
            if ttft is None and line.startswith("data: ") and '"content":"tok' in line:
                ttft = time.monotonic() - began
    if ttft is None:
        raise RuntimeError("a stream ended without a token")
    return ttft


Buckets = dict[float, float]  # upper bound -> cumulative count


def _queued_buckets(metrics_url: str) -> dict[str, Buckets]:
    """Per tier, the cumulative buckets of the priority model's time in queue."""
    text = httpx.get(metrics_url + "/metrics", timeout=10).text
    found: dict[str, Buckets] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (sample.name == "mqgate_dispatcher_queued_seconds_bucket"
                    and sample.labels.get("model") == PRIORITY_MODEL):
                found.setdefault(sample.labels["tier"], {})[float(sample.labels["le"])] = (
                    sample.value)
    return found


def _p50(before: Buckets, after: Buckets) -> float:
    """The median of what was observed between two scrapes, interpolated in its bucket."""
    counts = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    half = counts[-1][1] / 2
    low, below = 0.0, 0.0
    for le, cumulative in counts:
        if cumulative >= half:
            if le == float("inf"):
                return low
            return low + (le - low) * (half - below) / max(cumulative - below, 1e-9)
        low, below = le, cumulative
    return low


async def _priority(base: str, seconds: float) -> dict[str, list[float]]:
    url = base + "/v1/chat/completions"
    tiers: dict[str, list[float]] = {"default": [], "priority": []}
    stop_at = time.monotonic() + seconds

    async def client_loop(client: httpx.AsyncClient, tier: str, k: int) -> None:
        i = 0
        while time.monotonic() < stop_at:
            tiers[tier].append(await _stream(client, url, tier, k * 10_000 + i))
            i += 1

    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=64)) as client:
        defaults = [asyncio.create_task(client_loop(client, "default", k)) for k in range(32)]
        await asyncio.sleep(2.0)  # the worker is saturated and default jobs queue
        await asyncio.gather(*(client_loop(client, "priority", k) for k in range(2)))
        for task in defaults:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*defaults, return_exceptions=True)
    return tiers


def priority(base: str, metrics_url: str, seconds: float) -> dict[str, Any]:
    before = _queued_buckets(metrics_url)
    ttfts = asyncio.run(_priority(base, seconds))
    after = _queued_buckets(metrics_url)
    found: dict[str, Any] = {}
    for tier, values in ttfts.items():
        found[f"{tier}_ttft_p50_ms"] = statistics.median(values) * 1000
        found[f"{tier}_requests"] = len(values)
        found[f"{tier}_queued_p50_ms"] = _p50(before.get(tier, {}), after[tier]) * 1000
    found["ratio"] = found["priority_queued_p50_ms"] / found["default_queued_p50_ms"]
    print(f"  priority: time in queue p50 default {found['default_queued_p50_ms']:.0f} ms, "
          f"priority {found['priority_queued_p50_ms']:.0f} ms ({found['ratio']:.1%})",
          flush=True)
    return found
