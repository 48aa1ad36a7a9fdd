"""LiteLLM's proxy, the gateway users would pick instead for OpenAI-compatible servers, beside
mqgate in front of the same upstream.

The upstream is the fake OpenAI-compatible server (``bench/fake_upstream.py``: 32 tokens, as
fast as the machine allows). Both gateways read one config file, in LiteLLM's format; LiteLLM
runs from its own virtualenv (``bench/.venv-litellm``, made by ``make bench``) as its docs
start it, with the master key it requires and its cost map read from its package (this
machine is offline). Cells: non-streamed and streamed chat at c=1 and c=64, the upstream
called directly, through LiteLLM and through mqgate, runs interleaved.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from bench.load import Result, Target

ROOT = Path(__file__).resolve().parent.parent
LITELLM = ROOT / "bench" / ".venv-litellm" / "bin" / "litellm"
MODEL = "bench-upstream"
MASTER_KEY = "sk-bench-5f0c9e1d7a2b4c6e8f0a1b3c5d7e9f21"
TOKENS = 32
CELLS = [(mode, label, c) for mode, label in (("chat", "upstream non-stream"),
                                              ("stream", "upstream stream"))
         for c in (1, 64)]


class Comparing(Protocol):
    def compare(self, targets: dict[str, Target], mode: str, model: str, concurrency: int,
                tokens: int, seconds: float | None) -> dict[str, Result]: ...


class Starting(Protocol):
    def start(self, name: str, args: list[str], python: str = ...,
              env: dict[str, str] | None = ...) -> Any: ...


def write_config(path: Path, upstream: str) -> None:
    """One model on the fake upstream, as a LiteLLM user writes it; mqgate reads it too."""
    path.write_text(yaml.safe_dump({"model_list": [{
        "model_name": MODEL, "litellm_params": {
            "model": "openai/fake-upstream", "api_base": upstream + "/v1",
            "api_key": "os.environ/BENCH_UPSTREAM_KEY"}}]}))


def start(procs: Starting, *, upstream_port: int, litellm_port: int, config: Path) -> None:
    procs.start("upstream", ["-m", "bench.fake_upstream", "--port", str(upstream_port),
                             "--model", "fake-upstream", "--tokens", str(TOKENS)])
    procs.start("litellm", ["--config", str(config), "--host", "127.0.0.1", "--port",
                            str(litellm_port)], python=str(LITELLM),
                env={"LITELLM_MASTER_KEY": MASTER_KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})


@dataclass(frozen=True)
class Comparison:
    rows: list[dict[str, Any]]
    summary: dict[str, float]


def cells(bench: Comparing, urls: dict[str, str], only: list[str]) -> Comparison:
    targets = {"direct": Target(name="direct", urls=(urls["upstream"],)),
               "litellm": Target(name="litellm", urls=(urls["litellm"],),
                                 headers=(("Authorization", f"Bearer {MASTER_KEY}"),)),
               "mqgate": Target(name="mqgate", urls=(urls["api"],))}
    rows: list[dict[str, Any]] = []
    found: dict[str, dict[str, Result]] = {}
    for mode, label, concurrency in CELLS:
        cell = f"{label} c={concurrency}"
        if only and not any(o in cell for o in only):
            continue
        found[cell] = bench.compare(targets, mode, MODEL, concurrency, TOKENS, None)
        for name, result in found[cell].items():
            print(f"  {cell} {name}: {result.rps:.1f} rps", flush=True)
        litellm = found[cell]["litellm"].rps
        for name, result in found[cell].items():
            row: dict[str, Any] = {"cell": cell, "target": name, "result": result.as_dict()}
            if name == "mqgate":
                row["ratio"] = f"{result.rps / litellm:.2f}x" if litellm else ""
            rows.append(row)
    return Comparison(rows, _summary(found))


def _summary(found: dict[str, dict[str, Result]]) -> dict[str, float]:
    summary: dict[str, float] = {}
    for label in ("upstream non-stream", "upstream stream"):
        cell = found.get(f"{label} c=64")
        if cell and cell["litellm"].rps:
            summary[f"{label} c=64 mqgate/litellm rps"] = cell["mqgate"].rps / cell["litellm"].rps
    single = found.get("upstream non-stream c=1")
    if single:
        direct = single["direct"].p50_ms
        summary["c=1 added latency mqgate ms"] = single["mqgate"].p50_ms - direct
        summary["c=1 added latency litellm ms"] = single["litellm"].p50_ms - direct
    return summary
