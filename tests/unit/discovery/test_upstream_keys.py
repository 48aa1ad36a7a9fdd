"""Keys are found where calls are made: the dispatcher's environment or its copy of the
file, never the controller's answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.errors import UpstreamConfigError
from contracts.upstream import KeyRef, UpstreamEntry, key_digest
from discovery.upstream_keys import UpstreamKeys


def entry(key: KeyRef | None) -> UpstreamEntry:
    return UpstreamEntry(id="e", model_name="m", api_base="http://h/v1", model="m", key=key)


def write(path: Path, key: str) -> None:
    path.write_text("model_list:\n  - model_name: m\n    litellm_params:\n"
                    f"      model: openai/m\n      api_base: http://h/v1\n      api_key: {key}\n")


def test_an_environment_key_is_read_here() -> None:
    keys = UpstreamKeys("", environ={"VLLM_KEY": "sk-env"})
    assert keys.key(entry(KeyRef(env="VLLM_KEY"))) == "sk-env"
    assert keys.key(entry(None)) is None
    with pytest.raises(UpstreamConfigError, match=r"os\.environ/OTHER"):
        keys.key(entry(KeyRef(env="OTHER")))


def test_a_written_key_is_found_by_its_digest_and_reread_when_it_changes(
        tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    write(path, "sk-first")
    keys = UpstreamKeys(str(path), reread_after=0)
    assert keys.key(entry(KeyRef(digest=key_digest("sk-first")))) == "sk-first"
    write(path, "sk-second")
    assert keys.key(entry(KeyRef(digest=key_digest("sk-second")))) == "sk-second"


def test_a_written_key_without_the_file_is_an_error() -> None:
    with pytest.raises(UpstreamConfigError, match="MQGATE_CONFIG"):
        UpstreamKeys("").key(entry(KeyRef(digest=key_digest("sk-x"))))
