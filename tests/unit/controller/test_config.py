"""The config file: LiteLLM's model_list, its OpenAI-compatible entries, and reloads."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from contracts.upstream import ConfigError, KeyRef, key_digest
from controller.config import UpstreamConfig, UpstreamTable, load_upstreams
from runtime.config_file import ConfigFileError

LITELLM_CONFIG = """
model_list:
  - model_name: llama-3
    litellm_params:
      model: hosted_vllm/meta-llama/Llama-3.1-8B-Instruct
      api_base: http://vllm-a:8000/v1/
      api_key: os.environ/VLLM_KEY
      rpm: 600
      tpm: "100000"
      max_parallel_requests: 64
    model_info:
      max_input_tokens: 8192
  - model_name: llama-3
    litellm_params:
      model: openai/meta-llama/Llama-3.1-8B-Instruct
      api_base: os.environ/VLLM_B_BASE
      api_key: sk-written-here
      temperature: 0.2
      extra_headers: {X-Team: search}
      organization: org-1
  - model_name: qwen
    litellm_params:
      model: openai/qwen2.5
      api_base: http://ollama:11434/v1
litellm_settings:
  drop_params: true
router_settings:
  routing_strategy: simple-shuffle
"""


def table(text: str, environ: dict[str, str] | None = None) -> UpstreamTable:
    return UpstreamTable.parse(yaml.safe_load(text),
                               environ=environ if environ is not None else {
                                   "VLLM_B_BASE": "http://vllm-b:8000/v1"})


def test_a_litellm_config_is_read_unchanged() -> None:
    upstreams = table(LITELLM_CONFIG)
    assert upstreams.models() == ["llama-3", "qwen"]
    first, second = upstreams.of("llama-3")
    assert first.api_base == "http://vllm-a:8000/v1"
    assert first.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert (first.rpm, first.tpm, first.max_parallel_requests) == (600, 100000, 64)
    assert first.context_length == 8192
    assert first.key == KeyRef(env="VLLM_KEY")
    assert second.api_base == "http://vllm-b:8000/v1"
    assert second.headers == {"X-Team": "search", "OpenAI-Organization": "org-1"}
    assert second.defaults == {"temperature": 0.2}
    assert upstreams.of("qwen")[0].key is None
    assert first.id != second.id


def test_keys_never_appear_in_entries() -> None:
    entry = table(LITELLM_CONFIG).of("llama-3")[1]
    assert entry.key == KeyRef(digest=key_digest("sk-written-here"))
    assert "sk-written-here" not in entry.model_dump_json()


def test_entry_shares_weigh_as_litellm_does() -> None:
    first, second = table(LITELLM_CONFIG).of("llama-3")
    assert (first.share, second.share) == (600.0, 1.0)


@pytest.mark.parametrize(("model", "said"), [
    ("azure/gpt-4o", "model_list[0] ('m'): model 'azure/gpt-4o' is not an OpenAI-compatible"),
    ("gpt-4o", "not an OpenAI-compatible entry"),
    ("openai/*", "wildcard entries are not supported"),
])
def test_other_providers_are_refused_naming_the_entry(model: str, said: str) -> None:
    text = f"model_list:\n  - model_name: m\n    litellm_params: {{model: {model}}}\n"
    with pytest.raises(ConfigError) as caught:
        table(text)
    assert said in str(caught.value)


def test_an_unset_api_base_variable_is_named() -> None:
    with pytest.raises(ConfigError, match=r"model_list\[1\] \('llama-3'\): api_base is "
                                          r"os.environ/VLLM_B_BASE, which is not set"):
        table(LITELLM_CONFIG, environ={})


def test_an_invalid_field_is_named() -> None:
    text = ("model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/x\n"
            "      api_base: http://h/v1\n      max_parallel_requests: 0\n")
    with pytest.raises(ConfigError, match=r"model_list\[0\] \('m'\): "
                                          r"litellm_params.max_parallel_requests"):
        table(text)


def test_an_unreadable_file_says_why(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="cannot read"):
        load_upstreams(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_list: [\n")
    with pytest.raises(ConfigFileError, match="not valid YAML"):
        load_upstreams(str(bad))


def test_a_reload_reports_what_changed_and_keeps_the_entries_when_the_file_is_bad(
        tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("model_list:\n  - model_name: a\n    litellm_params:\n"
                    "      model: openai/a\n      api_base: http://h:1/v1\n")
    config = UpstreamConfig(str(path))
    assert config.table.models() == ["a"]
    path.write_text("model_list:\n  - model_name: b\n    litellm_params:\n"
                    "      model: openai/b\n      api_base: http://h:1/v1\n")
    assert config.reload() == {"a", "b"}
    assert config.table.models() == ["b"]
    path.write_text("model_list:\n  - model_name: c\n    litellm_params: {model: bedrock/c}\n")
    assert config.reload() is None
    assert config.table.models() == ["b"]
