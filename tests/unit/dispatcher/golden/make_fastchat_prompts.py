"""Write the golden prompt fixtures from FastChat's own code (not part of the test run).

For every conversation template a FastChat version registers, this records the
``/worker_get_conv_template`` payload exactly as a FastChat worker sends it (the template through
``dataclasses.asdict`` with ``sep_style`` as an int) and the prompt FastChat's
``openai_api_server`` builds from that payload for two fixed conversations: it rebuilds a
``Conversation`` from the payload, sets the system message, appends the user and assistant
messages, appends the empty assistant slot and calls ``get_prompt()``.

Run it with a Python that can import the FastChat version to record, outside this repository's
environment:

    # the release, fschat 0.2.36 (what ``pip install fschat`` gives; ``make bench`` builds
    # bench/.venv-fastchat with it too)
    python3 -m venv /tmp/fschat036
    /tmp/fschat036/bin/pip install "fschat==0.2.36" "pydantic<2"
    /tmp/fschat036/bin/python tests/unit/dispatcher/golden/make_fastchat_prompts.py \\
        --label "fschat 0.2.36" tests/unit/dispatcher/golden/fastchat_release.json

    # git main: fastchat/conversation.py of a FastChat checkout, loaded on its own
    git -C FastChat show HEAD:fastchat/conversation.py > /tmp/conversation_main.py
    python3 tests/unit/dispatcher/golden/make_fastchat_prompts.py \\
        --conversation-py /tmp/conversation_main.py \\
        --label "FastChat git main $(git -C FastChat rev-parse --short HEAD)" \\
        tests/unit/dispatcher/golden/fastchat_main.json
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, cast

CONVERSATIONS: dict[str, list[dict[str, str]]] = {
    "system": [
        {"role": "system", "content": "You are a terse assistant.\nAnswer in one line."},
        {"role": "user", "content": "Hello!\n\nWho are you?"},
        {"role": "assistant", "content": " I am a model.  "},
        {"role": "user", "content": "What is 2 + 2? {braces} stay"},
    ],
    "no_system": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "q2"},
    ],
}


def load_conversation_module(path: Path | None) -> ModuleType:
    if path is None:
        import fastchat.conversation as module  # type: ignore[import-not-found]

        return cast(ModuleType, module)
    spec = importlib.util.spec_from_file_location("fastchat_conversation", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up by name
    spec.loader.exec_module(module)
    return module


def worker_payload(template: Any) -> dict[str, Any]:
    """What ``/worker_get_conv_template`` answers: base_model_worker sets sep_style to int."""
    conv = template.copy()
    conv.sep_style = int(conv.sep_style)
    wire: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(conv)))  # tuples to lists
    return wire


def server_prompt(fc: ModuleType, payload: dict[str, Any], messages: list[dict[str, str]]) -> str:
    """The prompt openai_api_server's get_gen_params builds from a worker's payload."""
    conv = fc.Conversation(
        name=payload["name"], system_template=payload["system_template"],
        system_message=payload["system_message"], roles=payload["roles"],
        messages=list(payload["messages"]), offset=payload["offset"],
        sep_style=fc.SeparatorStyle(payload["sep_style"]), sep=payload["sep"],
        sep2=payload["sep2"], stop_str=payload["stop_str"],
        stop_token_ids=payload["stop_token_ids"])
    for message in messages:
        if message["role"] == "system":
            conv.set_system_message(message["content"])
        elif message["role"] == "user":
            conv.append_message(conv.roles[0], message["content"])
        elif message["role"] == "assistant":
            conv.append_message(conv.roles[1], message["content"])
    conv.append_message(conv.roles[1], None)
    return str(conv.get_prompt())


def record(fc: ModuleType, label: str) -> dict[str, Any]:
    templates = []
    for name in sorted(fc.conv_templates):
        try:
            payload = worker_payload(fc.conv_templates[name])
        except TypeError as exc:  # API-model templates carry no sep_style: no worker serves them
            templates.append({"registered_as": name, "payload": None,
                              "fastchat_fails": {"worker": f"TypeError: {exc}"}})
            continue
        entry: dict[str, Any] = {"registered_as": name, "payload": payload,
                                 "style": fc.SeparatorStyle(payload["sep_style"]).name}
        prompts: dict[str, str] = {}
        failures: dict[str, str] = {}
        for case, messages in CONVERSATIONS.items():
            try:
                prompts[case] = server_prompt(fc, payload, messages)
            except Exception as exc:  # recorded as what FastChat does
                failures[case] = f"{type(exc).__name__}: {exc}"
        entry["prompts"] = prompts
        if failures:
            entry["fastchat_fails"] = failures
        templates.append(entry)
    styles = {style.name: int(style) for style in fc.SeparatorStyle}
    return {"fastchat": label, "sep_styles": styles, "conversations": CONVERSATIONS,
            "templates": templates}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--label", required=True, help="the FastChat version recorded")
    parser.add_argument("--conversation-py", type=Path, default=None,
                        help="a fastchat/conversation.py to load instead of importing fastchat")
    args = parser.parse_args()
    data = record(load_conversation_module(args.conversation_py), args.label)
    args.output.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n",
                           encoding="utf-8")


if __name__ == "__main__":
    main()
