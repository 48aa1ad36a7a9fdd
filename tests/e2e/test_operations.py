"""What an operator watches: metrics after real traffic, health endpoints, logs."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import cleanup_namespace
from tests.e2e.conftest import API_KEYS
from tests.stack import Proc, Stack, free_port
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(url + "/metrics", timeout=10).text
    values: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return values


def total(values: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in values.items() if n == name and wanted <= ls)


def dispatchers_total(stack: Stack, name: str, **labels: str) -> float:
    return sum(total(scrape(d.url), name, **labels) for d in stack.dispatchers)


def test_metrics_count_real_traffic(stack: Stack, client: openai.OpenAI) -> None:
    api_before = scrape(stack.base_url)
    jobs_before = dispatchers_total(stack, "mqgate_dispatcher_jobs_total", kind="chat",
                                    model="chatml-model", outcome="ok")
    queued_before = dispatchers_total(stack, "mqgate_dispatcher_queued_seconds_count")
    for _ in range(3):
        client.chat.completions.create(model="chatml-model",
                                       messages=[{"role": "user", "content": "count me"}])
    list(client.chat.completions.create(model="chatml-model", stream=True,
                                        messages=[{"role": "user", "content": "stream me"}]))
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="missing", messages=[{"role": "user",
                                                                   "content": "x"}])
    api_after = scrape(stack.base_url)
    route = "/v1/chat/completions"

    def delta(name: str, **labels: str) -> float:
        return total(api_after, name, **labels) - total(api_before, name, **labels)

    assert delta("mqgate_api_requests_total", route=route, model="chatml-model",
                 status="200") == 4
    assert delta("mqgate_api_requests_total", route=route, status="404") == 1
    assert delta("mqgate_api_request_duration_seconds_count", route=route) == 5
    assert delta("mqgate_api_time_to_first_token_seconds_count", route=route) == 1
    assert dispatchers_total(stack, "mqgate_dispatcher_jobs_total", kind="chat",
                             model="chatml-model", outcome="ok") - jobs_before == 4
    assert dispatchers_total(stack, "mqgate_dispatcher_queued_seconds_count") - \
        queued_before == 4
    assert dispatchers_total(stack, "mqgate_cache_lookups_total", kind="workers",
                             result="hit") > 0
    # the depth of each lane this api published to, as the broker last said (every 5 s)
    wait_until(lambda: ("mqgate_queue_depth", frozenset({("model", "chatml-model")}))
               in scrape(stack.base_url), timeout=20, what="the chat lane's depth in /metrics")
    assert total(api_after, "mqgate_api_requests_in_flight") >= 0


def test_worker_failures_are_counted(stack: Stack, client: openai.OpenAI) -> None:
    before = dispatchers_total(stack, "mqgate_dispatcher_worker_errors_total",
                               code="worker_error")
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="chatml-model", messages=[
            {"role": "user", "content": "fail [[error]]"}])
    assert dispatchers_total(stack, "mqgate_dispatcher_worker_errors_total",
                             code="worker_error") == before + 1
    assert dispatchers_total(stack, "mqgate_dispatcher_jobs_total", model="chatml-model",
                             outcome="worker_error") >= 1


def test_health_and_readiness_answer_without_a_key(stack: Stack) -> None:
    for url in (stack.base_url, stack.controller_url, *(d.url for d in stack.dispatchers)):
        assert httpx.get(url + "/healthz", timeout=10).status_code == 200
        ready = httpx.get(url + "/readyz", timeout=10)
        assert ready.status_code == 200, (url, ready.text)
        assert ready.json()["status"] == "ready"
    readiness = httpx.get(stack.base_url + "/readyz").json()
    assert set(readiness["checks"]) == {"broker", "dispatchers", "models", "redis", "controller"}
    assert set(readiness["ready_when"]) == {"broker", "dispatchers", "models"}


def test_logs_are_json_with_job_ids_and_never_prompts_or_keys(stack: Stack,
                                                              client: openai.OpenAI) -> None:
    secret = "SECRET-PROMPT-9f1c2"
    client.chat.completions.create(model="chatml-model",
                                   messages=[{"role": "user", "content": secret}])
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="chatml-model", messages=[
            {"role": "user", "content": f"{secret} [[error]]"}])
    mqgate_logs = [p for p in stack.procs if not p.name.startswith("worker-")]
    job_ids = set()
    for proc in mqgate_logs:
        text = proc.log.read_text(errors="replace")
        assert secret not in text, proc.name
        for key in API_KEYS:
            assert key not in text, proc.name
        for line in text.splitlines():
            assert line.startswith("{") and line.endswith("}"), (proc.name, line)
            if match := re.search(r'"job_id": "([0-9a-f]{32})"', line):
                job_ids.add(match.group(1))
    api_lines = stack.procs[[p.name for p in stack.procs].index("api")].log.read_text()
    assert any('"job_id"' in line and "/v1/chat/completions" in line
               for line in api_lines.splitlines())
    assert len(job_ids) >= 2


def logged_metrics_port(proc: Proc, timeout: float = 20.0) -> int:
    """The port a dispatcher says it serves health and metrics on."""

    def logged() -> re.Match[str] | None:
        match = re.search(r"health and metrics on http://[^:]+:(\d+)",
                          proc.log.read_text(errors="replace"))
        assert match or proc.popen.poll() is None, f"{proc.name} exited\n{proc.tail()}"
        return match

    match = wait_until(logged, timeout=timeout, interval=0.1,
                       what=f"{proc.name} to serve metrics", details=proc.tail)
    assert match is not None
    return int(match.group(1))


def test_dispatchers_on_one_host_take_metrics_ports_in_turn(services: None,
                                                            tmp_path: Path) -> None:
    """Default settings, two dispatchers on one host: neither exits over the metrics port."""
    stack = Stack(tmp_path)
    port = free_port()
    try:
        stack.start_controller()
        stack.start_worker("a", ["fake"])
        stack.wait_models(["fake"])
        first = stack.start_dispatcher(metrics_port=port)
        assert logged_metrics_port(first) == port
        second = stack.start_dispatcher(metrics_port=port)
        second_port = logged_metrics_port(second)
        assert second_port > port
        stack.start_api()
        stack.wait_serving("fake")
        assert first.popen.poll() is None and second.popen.poll() is None
        for served in (port, second_port):
            metrics = httpx.get(f"http://127.0.0.1:{served}/metrics", timeout=10)
            assert "mqgate_dispatcher_jobs_in_flight" in metrics.text
    finally:
        stack.stop()
        asyncio.run(cleanup_namespace(stack.namespace))
