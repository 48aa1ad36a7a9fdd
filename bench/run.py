"""``make bench``: the direct worker, FastChat's server and mqgate, under the same load.

Prints one table (RPS, latency p50/p99, time to first token p50/p99, chunks/s, errors, and
mqgate/FastChat per cell) and saves the raw results as JSON in bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import peers, scheduling
from bench.load import Result, Target, median_result, run
from bench.probe import amqp_round_trip
from tests.stack import free_port

ROOT = Path(__file__).resolve().parent.parent
FASTCHAT_PYTHON = ROOT / "bench" / ".venv-fastchat" / "bin" / "python"
FAST, SLOW = "bench-fast", "bench-slow"


@dataclass
class Processes:
    logs: Path
    env: dict[str, str]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, name: str, args: list[str], python: str = sys.executable,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("ab") as out:
            proc = subprocess.Popen([python, *args], cwd=ROOT, env={**self.env, **(env or {})},
                                    stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)


def wait_http(url: str, method: str = "GET", timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            httpx.request(method, url, timeout=2)
            return
        time.sleep(0.1)
    raise RuntimeError(f"{url} never answered")


def wait_serving(base: str, model: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            r = httpx.post(base + "/v1/chat/completions", timeout=10, json={
                "model": model, "max_tokens": 4,
                "messages": [{"role": "user", "content": "warm up"}]})
            if r.status_code == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"{base} never served {model}")


def register(controller: str, worker: str, model: str) -> None:
    httpx.post(controller + "/register_worker", timeout=5, json={
        "worker_name": worker, "check_heart_beat": False,
        "worker_status": {"model_names": [model], "speed": 1, "queue_length": 0}},
    ).raise_for_status()


@dataclass
class Bench:
    seconds: float
    repeats: int
    procs: Processes
    only: list[str] = field(default_factory=list)

    def once(self, target: Target, mode: str, model: str, concurrency: int,
             tokens: int = 32, seconds: float | None = None) -> Result:
        return asyncio.run(run(target, mode=mode, model=model, concurrency=concurrency,
                               seconds=seconds or self.seconds, tokens=tokens))

    def measure(self, target: Target, mode: str, model: str, concurrency: int,
                tokens: int = 32, seconds: float | None = None) -> Result:
        return median_result([self.once(target, mode, model, concurrency, tokens, seconds)
                              for _ in range(self.repeats)])

    def compare(self, targets: dict[str, Target], mode: str, model: str, concurrency: int,
                tokens: int, seconds: float | None,
                each_round: Callable[[], None] | None = None) -> dict[str, Result]:
        """The median run of each target, the runs interleaved (one of each target in turn,
        after ``each_round`` if given), so that a slow or fast stretch of a noisy machine
        falls on all of them alike."""
        runs: dict[str, list[Result]] = {name: [] for name in targets}
        for _ in range(self.repeats):
            if each_round is not None:
                each_round()
            for name, target in targets.items():
                runs[name].append(self.once(target, mode, model, concurrency, tokens, seconds))
        return {name: median_result(results) for name, results in runs.items()}


CELLS: list[tuple[str, str, int]] = [
    (mode, label, c) for mode, label in (("chat", "chat non-stream"), ("stream", "chat stream"),
                                         ("embed", "embeddings"))
    for c in (1, 16, 64)]


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:.{digits}f}"


def table(rows: list[dict[str, Any]], versus: str = "FastChat") -> str:
    head = ("| cell | target | RPS | p50 ms | p99 ms | TTFT p50 | TTFT p99 | chunks/s | errors "
            f"| mqgate/{versus} RPS |")
    lines = [head, "|" + " --- |" * 10]
    for row in rows:
        r = row["result"]
        lines.append(f"| {row['cell']} | {row['target']} | {fmt(r['rps'])} | {fmt(r['p50_ms'])} "
                     f"| {fmt(r['p99_ms'])} | {fmt(r['ttft_p50_ms'])} | {fmt(r['ttft_p99_ms'])} "
                     f"| {fmt(r['chunks_per_s'], 0)} | {r['errors']} "
                     f"| {row.get('ratio', '')} |")
    return "\n".join(lines)


@contextlib.contextmanager
def stack(args: argparse.Namespace) -> Iterator[tuple[Bench, dict[str, str], Processes]]:
    logs = ROOT / "bench" / "results" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    ports = {name: free_port() for name in ("controller", "fc_controller", "fc_api", "fast",
                                            "slow", "api", "api2", "flood", "idle",
                                            "priority", "upstream", "litellm",
                                            "dispatcher_metrics")}
    upstreams = logs / "upstreams.yaml"  # LiteLLM's format: LiteLLM and mqgate read it
    env = dict(os.environ, MQGATE_NAMESPACE=namespace, MQGATE_LOG_LEVEL="WARNING",
               MQGATE_CONTROLLER_URL=f"http://127.0.0.1:{ports['controller']}",
               MQGATE_QUEUE_MAX_LENGTH="100000", PYTHONUNBUFFERED="1",
               # the bench's fake workers take any number of generations at once
               MQGATE_WORKER_CONCURRENCY="100000",
               MQGATE_WORKER_CONCURRENCY_BY_MODEL=scheduling.WORKER_LIMITS,
               MQGATE_CONFIG=str(upstreams), BENCH_UPSTREAM_KEY="sk-unused")
    procs = Processes(logs, env)
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    peers.write_config(upstreams, urls["upstream"])
    try:
        procs.start("controller", ["-m", "mqgate_cli", "controller", "--port",
                                   str(ports["controller"])])
        wait_http(urls["controller"] + "/healthz")
        procs.start("worker-fast", ["-m", "bench.fake_worker", "--port", str(ports["fast"]),
                                    "--model", FAST, "--tokens", "32",
                                    "--controller", urls["controller"]])
        procs.start("worker-slow", ["-m", "bench.fake_worker", "--port", str(ports["slow"]),
                                    "--model", SLOW, "--tokens", "128", "--delay", "0.02",
                                    "--controller", urls["controller"]])
        for name, model, tokens, delay in (
                ("flood", scheduling.FLOOD_MODEL, scheduling.FLOOD_TOKENS,
                 scheduling.FLOOD_DELAY),
                ("idle", scheduling.IDLE_MODEL, 32, 0.0),
                ("priority", scheduling.PRIORITY_MODEL, scheduling.PRIORITY_TOKENS,
                 scheduling.PRIORITY_DELAY)):
            procs.start(f"worker-{name}", ["-m", "bench.fake_worker", "--port",
                                           str(ports[name]), "--model", model, "--tokens",
                                           str(tokens), "--delay", str(delay),
                                           "--controller", urls["controller"]])
        for name in ("fast", "slow", "flood", "idle", "priority"):
            wait_http(urls[name] + "/worker_get_status", "POST")
        fastchat_env = {"LOGDIR": str(logs)}  # FastChat writes its own log files there
        procs.start("fastchat-controller", ["-m", "fastchat.serve.controller", "--host",
                                            "127.0.0.1", "--port", str(ports["fc_controller"])],
                    python=str(FASTCHAT_PYTHON), env=fastchat_env)
        wait_http(urls["fc_controller"] + "/test_connection")
        register(urls["fc_controller"], urls["fast"], FAST)
        register(urls["fc_controller"], urls["slow"], SLOW)
        register(urls["fc_controller"], urls["flood"], scheduling.FLOOD_MODEL)
        register(urls["fc_controller"], urls["idle"], scheduling.IDLE_MODEL)
        procs.start("fastchat-api", ["-m", "fastchat.serve.openai_api_server", "--host",
                                     "127.0.0.1", "--port", str(ports["fc_api"]),
                                     "--controller-address", urls["fc_controller"]],
                    python=str(FASTCHAT_PYTHON), env=fastchat_env)
        wait_serving(urls["fc_api"], FAST)
        peers.start(procs, upstream_port=ports["upstream"], litellm_port=ports["litellm"],
                    config=upstreams)
        wait_http(urls["litellm"] + "/health/liveliness", timeout=180)
        yield Bench(args.seconds, args.repeats, procs, args.only), urls, procs
    finally:
        procs.stop_all()
        with contextlib.suppress(Exception):
            from tests.conftest import cleanup_namespace

            asyncio.run(cleanup_namespace(namespace, [
                FAST, SLOW, scheduling.FLOOD_MODEL, scheduling.IDLE_MODEL,
                scheduling.PRIORITY_MODEL, peers.MODEL]))  # their lanes, with the rest


def start_mqgate(procs: Processes, urls: dict[str, str], *, dispatchers: int,
                 apis: int) -> list[subprocess.Popen[bytes]]:
    # the first dispatcher's metrics tell each tier's time in queue; the others serve none
    metrics = urls["dispatcher_metrics"].rsplit(":", 1)[1]
    started = [procs.start(f"dispatcher-{i}", ["-m", "mqgate_cli", "dispatcher"],
                           env={"MQGATE_METRICS_PORT": metrics if i == 0 else "0"})
               for i in range(dispatchers)]
    for name in ("api", "api2")[:apis]:
        port = urls[name].rsplit(":", 1)[1]
        started.append(procs.start(name, ["-m", "mqgate_cli", "api", "--port", port]))
        wait_http(urls[name] + "/healthz")
        wait_serving(urls[name], FAST)
    return started


def comparison(bench: Bench, urls: dict[str, str]) -> list[dict[str, Any]]:
    targets = {"direct": Target(name="direct", urls=(urls["fast"],), direct=True),
               "fastchat": Target(name="fastchat", urls=(urls["fc_api"],)),
               "mqgate": Target(name="mqgate", urls=(urls["api"],))}
    rows: list[dict[str, Any]] = []
    cells = [*CELLS, ("stream", "realistic stream 128 tok x 20 ms", 64)]
    cells = [c for c in cells if not bench.only or any(o in f"{c[1]} c={c[2]}"
                                                      for o in bench.only)]
    for mode, label, concurrency in cells:
        model = SLOW if label.startswith("realistic") else FAST
        tokens = 128 if model == SLOW else 32
        seconds = bench.seconds * 2 if model == SLOW else None
        cell_targets = dict(targets)
        if model == SLOW:
            cell_targets["direct"] = Target(name="direct", urls=(urls["slow"],), direct=True)
        found = bench.compare(cell_targets, mode, model, concurrency, tokens, seconds)
        for name, result in found.items():
            print(f"  {label} c={concurrency} {name}: {result.rps:.1f} rps", flush=True)
        ratio = found["mqgate"].rps / found["fastchat"].rps if found["fastchat"].rps else 0
        for name, result in found.items():
            row = {"cell": f"{label} c={concurrency}", "target": name,
                   "result": result.as_dict()}
            if name == "mqgate":
                row["ratio"] = f"{ratio:.2f}x"
                row["vs_direct"] = {
                    "rps": result.rps / found["direct"].rps if found["direct"].rps else None,
                    "ttft_p50": (result.ttft_p50_ms / found["direct"].ttft_p50_ms
                                 if result.ttft_p50_ms and found["direct"].ttft_p50_ms
                                 else None)}
            rows.append(row)
    return rows


def scaling(bench: Bench, procs: Processes, urls: dict[str, str],
            running: list[subprocess.Popen[bytes]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for proc in running:
        procs.stop(proc)
    for dispatchers, apis in ((1, 1), (2, 1), (4, 1), (2, 2)):
        started = start_mqgate(procs, urls, dispatchers=dispatchers, apis=apis)
        target = Target(name="mqgate", urls=tuple(urls[n] for n in ("api", "api2")[:apis]))
        result = bench.measure(target, "chat", FAST, 64)
        print(f"  scaling {dispatchers} dispatchers, {apis} api: {result.rps:.1f} rps",
              flush=True)
        out.append({"dispatchers": dispatchers, "apis": apis, "result": result.as_dict()})
        for proc in started:
            procs.stop(proc)
    return out


def single_client(bench: Bench, urls: dict[str, str]) -> tuple[float, dict[str, Any]]:
    """The bare AMQP round trip (the median of the probes' medians) and the median c=1
    non-stream runs of the direct worker and mqgate, a probe and one run of each in turn."""
    amqp_url = os.environ.get("MQGATE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    probes: list[float] = []
    found = bench.compare({"direct": Target(name="direct", urls=(urls["fast"],), direct=True),
                           "mqgate": Target(name="mqgate", urls=(urls["api"],))},
                          "chat", FAST, 1, 32, None,
                          each_round=lambda: probes.append(asyncio.run(
                              amqp_round_trip(amqp_url))))
    probes.sort()
    return probes[len(probes) // 2], {name: r.as_dict() for name, r in found.items()}


def scheduling_cells(bench: Bench, urls: dict[str, str]) -> dict[str, Any]:
    """Fairness (the direct workers, FastChat and mqgate) and priority (mqgate alone: the
    others have no queue to order)."""
    found: dict[str, Any] = {}
    if not bench.only or any(o in "fairness" for o in bench.only):
        found["fairness"] = scheduling.fairness({
            "direct": scheduling.Route.workers(urls["flood"], urls["idle"]),
            "fastchat": scheduling.Route.openai(urls["fc_api"]),
            "mqgate": scheduling.Route.openai(urls["api"])})
    if not bench.only or any(o in "priority" for o in bench.only):
        found["priority"] = scheduling.priority(urls["api"], urls["dispatcher_metrics"],
                                                bench.seconds * 5)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description="mqgate against FastChat's server")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of one run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per cell (median kept)")
    parser.add_argument("--no-scaling", action="store_true")
    parser.add_argument("--only", action="append", default=[],
                        help="run only the cells whose name contains this (repeatable)")
    args = parser.parse_args()
    if not FASTCHAT_PYTHON.exists():
        sys.exit("FastChat's virtualenv is missing: run `make bench` (it creates it)")
    if not peers.LITELLM.exists():
        sys.exit("LiteLLM's virtualenv is missing: run `make bench` (it creates it)")
    started_at = time.time()
    with stack(args) as (bench, urls, procs):
        running = start_mqgate(procs, urls, dispatchers=1, apis=1)
        probe_ms, c1 = single_client(bench, urls)
        rows = comparison(bench, urls)
        wait_serving(urls["api"], peers.MODEL)
        upstream = peers.cells(bench, urls, bench.only)
        sched = scheduling_cells(bench, urls)
        scale = [] if args.no_scaling else scaling(bench, procs, urls, running)
    added = c1["mqgate"]["p50_ms"] - c1["direct"]["p50_ms"]
    report = {"started": started_at, "seconds_per_run": args.seconds, "repeats": args.repeats,
              "amqp_round_trip_p50_ms": probe_ms,
              "c1_added_latency_ms": added, "c1_added_over_round_trip": added / probe_ms,
              "cells": rows, "scheduling": sched, "scaling": scale,
              "upstreams": {"cells": upstream.rows, "summary": upstream.summary},
              "took_s": time.time() - started_at}
    out = ROOT / "bench" / "results" / time.strftime("bench-%Y%m%d-%H%M%S.json")
    out.write_text(json.dumps(report, indent=2))
    print(table(rows))
    print("\nin front of an OpenAI-compatible upstream, against LiteLLM's proxy:")
    print(table(upstream.rows, versus="LiteLLM"))
    for name, value in upstream.summary.items():
        print(f"{name}: {value:.2f}")
    print(f"\nbare AMQP round trip p50: {probe_ms:.2f} ms; mqgate's added latency at c=1: "
          f"{added:.2f} ms ({added / probe_ms:.2f}x the round trip)")
    if fair := sched.get("fairness"):
        for name, r in fair.items():
            print(f"fairness {name}: idle model p50/max {r['alone_p50_ms']:.0f}/"
                  f"{r['alone_max_ms']:.0f} ms alone, {r['flood_p50_ms']:.0f}/"
                  f"{r['flood_max_ms']:.0f} ms beside the flood "
                  f"(max {r['max_over_alone']:.2f}x the p50 alone)")
    if prio := sched.get("priority"):
        print(f"priority: time in queue p50 default {prio['default_queued_p50_ms']:.0f} ms, "
              f"priority {prio['priority_queued_p50_ms']:.0f} ms ({prio['ratio']:.1%}); time "
              f"to first token p50 {prio['default_ttft_p50_ms']:.0f} / "
              f"{prio['priority_ttft_p50_ms']:.0f} ms")
    for row in scale:
        print(f"scaling: {row['dispatchers']} dispatcher(s), {row['apis']} api: "
              f"{row['result']['rps']:.1f} rps")
    print(f"\nraw results: {out.relative_to(ROOT)} ({report['took_s']:.0f} s)")


if __name__ == "__main__":
    main()
