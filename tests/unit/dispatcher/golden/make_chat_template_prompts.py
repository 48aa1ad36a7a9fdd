"""Fill in the prompts transformers renders for the chat templates in chat_templates.json.

Not part of the test run. Each entry of ``chat_templates.json`` holds a model's own chat template
(as its tokenizer_config.json or GGUF carries it) with its BOS and EOS tokens; this writes, for
each of the fixed conversations below, what ``tokenizer.apply_chat_template(messages,
tokenize=False, add_generation_prompt=True)`` returns, or the error it raises. A tokenizer with
an empty vocabulary and the model's special tokens is enough: only the template renders.
transformers' clock is pinned to DATE so that templates that print today's date stay comparable.

Run it with a Python that has transformers, outside this repository's environment:

    python3 -m venv /tmp/transformers && /tmp/transformers/bin/pip install transformers
    /tmp/transformers/bin/python tests/unit/dispatcher/golden/make_chat_template_prompts.py
"""

from __future__ import annotations

import importlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).with_name("chat_templates.json")
DATE = "2025-03-14T12:00:00"
CONVERSATIONS: dict[str, list[dict[str, str]]] = {
    "system": [
        {"role": "system", "content": "You are a terse assistant.\nAnswer in one line."},
        {"role": "user", "content": "Hello!\n\nWho are you? Grüße 👋"},
        {"role": "assistant", "content": "  I am a model.  "},
        {"role": "user", "content": "What is 2 + 2?"},
    ],
    "no_system": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "q2"},
    ],
    "one_turn": [{"role": "user", "content": "hi"}],
}


def tokenizer(bos: str, eos: str) -> Any:
    from tokenizers import Tokenizer, models

    transformers = importlib.import_module("transformers")
    empty = Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>"))
    return transformers.PreTrainedTokenizerFast(tokenizer_object=empty, unk_token="<unk>",
                                                bos_token=bos or None, eos_token=eos or None)


class PinnedClock(datetime):
    """transformers' ``strftime_now`` formats ``datetime.now()``: this one answers DATE."""

    @classmethod
    def now(cls, tz: Any = None) -> PinnedClock:
        return cls.fromisoformat(DATE)


def render(entry: dict[str, Any], messages: list[dict[str, str]]) -> dict[str, str]:
    try:
        prompt = tokenizer(entry["bos_token"], entry["eos_token"]).apply_chat_template(
            messages, chat_template=entry["chat_template"], tokenize=False,
            add_generation_prompt=True)
    except Exception as exc:  # the template refusing is an expected answer
        return {"error": str(exc)}
    return {"prompt": prompt}


def main() -> None:
    transformers = importlib.import_module("transformers")
    clock: Any = importlib.import_module("transformers.utils.chat_template_utils")
    clock.datetime = PinnedClock
    data = json.loads(FIXTURE.read_text(encoding="utf-8"))
    data["rendered_by"] = f"transformers {transformers.__version__}"
    data["date"] = DATE
    data["conversations"] = CONVERSATIONS
    for entry in data["templates"]:
        entry["expected"] = {case: render(entry, messages)
                             for case, messages in CONVERSATIONS.items()}
    FIXTURE.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
