"""A stack whose controller reads a config file of OpenAI-compatible upstreams, and the
upstreams it points at: the fake one (bench/fake_upstream.py) and llama.cpp's server."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.stack import Proc, Stack, free_port

UPSTREAM_KEY = "sk-upstream-test"  # what the dispatchers send, from os.environ/UPSTREAM_KEY


@dataclass
class Upstream:
    url: str  # its api_base
    proc: Proc

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = httpx.get(self.url + "/_stats", timeout=5).json()
        return data


def entry(model_name: str, api_base: str, served: str, **params: Any) -> dict[str, Any]:
    """A model_list entry as LiteLLM's docs write them."""
    return {"model_name": model_name, "litellm_params": {
        "model": f"openai/{served}", "api_base": api_base,
        "api_key": "os.environ/UPSTREAM_KEY", **params}}


@dataclass
class UpstreamStack(Stack):
    config: Path = field(default=Path())
    upstreams: dict[str, Upstream] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.config = self.workdir / f"config-{self.namespace}.yaml"
        self.env_extra.update({"MQGATE_CONFIG": str(self.config),
                               "UPSTREAM_KEY": UPSTREAM_KEY})

    def write_config(self, entries: list[dict[str, Any]]) -> None:
        self.config.write_text(yaml.safe_dump({
            "model_list": entries, "litellm_settings": {"drop_params": True}}))

    def start_fake_upstream(self, name: str, served: str, *, tokens: int = 8) -> Upstream:
        port = free_port()
        proc = self._spawn(f"upstream-{name}", [
            sys.executable, "-m", "bench.fake_upstream", "--port", str(port), "--model",
            served, "--tokens", str(tokens)])
        upstream = Upstream(f"http://127.0.0.1:{port}/v1", proc)
        self._wait_http(upstream.url + "/_stats", proc.name)
        self.upstreams[name] = upstream
        return upstream

    def start_llama_server(self, gguf: Path, served: str) -> Upstream:
        """llama-cpp-python's own OpenAI-compatible server on the GGUF: one thread, one
        request at a time (a request that waits does not interrupt the running one)."""
        port = free_port()
        proc = self._spawn("llama-server", [
            sys.executable, "-m", "llama_cpp.server", "--model", str(gguf),
            "--model_alias", served, "--host", "127.0.0.1", "--port", str(port),
            "--n_ctx", "2048", "--n_threads", "1", "--interrupt_requests", "False"])
        upstream = Upstream(f"http://127.0.0.1:{port}/v1", proc)
        self._wait_http(upstream.url + "/models", proc.name, timeout=120)
        self.upstreams["llama"] = upstream
        return upstream
