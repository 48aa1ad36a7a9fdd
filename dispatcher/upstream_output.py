"""An upstream's stream chunks made into the response a client that did not stream gets.

Chunks are merged field by field, so that whatever the upstream sends reaches the client:
text fields of a delta (``content``, ``refusal``, ``reasoning_content``, ...) are
concatenated; tool calls are merged by their ``index`` (the first delta of a call carries its
``id``, ``type`` and function ``name``, later ones add to its ``arguments``; some servers
repeat the name in every delta, which is not doubled); logprobs lists are concatenated;
any other field keeps its last value that is not null.
"""

from __future__ import annotations

from typing import Any

import orjson

from contracts.openai.common import Usage

Json = dict[str, Any]

_FIRST_WINS = ("id", "type", "name")  # in tool calls: repeated by some servers, never split


def _merge_text(into: Json, key: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, str) and isinstance(into.get(key), str):
        into[key] += value
    else:
        into[key] = value


def _merge_call(into: Json, delta: Json) -> None:
    for key, value in delta.items():
        if key == "index" or value is None:
            continue
        if key == "function" and isinstance(value, dict):
            _merge_call(into.setdefault("function", {}), value)
        elif key == "arguments" and isinstance(value, str):
            into[key] = into.get(key, "") + value
        elif key in _FIRST_WINS:
            if not into.get(key):
                into[key] = value
        else:
            into[key] = value


def _merge_calls(calls: dict[int, Json], deltas: list[Any]) -> None:
    for position, delta in enumerate(deltas):
        if isinstance(delta, dict):
            index = delta.get("index")
            _merge_call(calls.setdefault(index if isinstance(index, int) else position, {}),
                        delta)


def _merge_logprobs(into: Json, delta: Any) -> None:
    if not isinstance(delta, dict):
        return
    for key, value in delta.items():
        if isinstance(value, list) and isinstance(into.get(key), list):
            into[key] = into[key] + value
        elif value is not None:
            into[key] = list(value) if isinstance(value, list) else value


class _Choice:
    __slots__ = ("calls", "fields", "function_call", "logprobs", "message")

    def __init__(self) -> None:
        self.fields: Json = {}  # finish_reason and whatever else a choice carries
        self.message: Json = {}  # chat: the merged deltas; completions: text
        self.calls: dict[int, Json] = {}
        self.function_call: Json = {}
        self.logprobs: Json | None = None

    def add_delta(self, delta: Json) -> None:
        for key, value in delta.items():
            if key == "tool_calls":
                if isinstance(value, list):
                    _merge_calls(self.calls, value)
            elif key == "function_call":
                if isinstance(value, dict):
                    _merge_call(self.function_call, value)
            elif key == "role":
                if value:
                    self.message["role"] = value
            else:
                _merge_text(self.message, key, value)

    def add(self, choice: Json, *, chat: bool) -> None:
        for key, value in choice.items():
            if key == "index":
                continue
            if chat and key == "delta":
                if isinstance(value, dict):
                    self.add_delta(value)
            elif key == "text":
                _merge_text(self.message, "text", value)
            elif key == "logprobs":
                if value is not None:
                    self.logprobs = self.logprobs or {}
                    _merge_logprobs(self.logprobs, value)
            elif value is not None:
                self.fields[key] = value

    def chat_message(self) -> Json:
        message: Json = {"role": self.message.pop("role", "assistant"),
                         "content": self.message.pop("content", None)}
        message.update(self.message)
        if self.calls:
            message["tool_calls"] = [self.calls[i] for i in sorted(self.calls)]
        if self.function_call:
            message["function_call"] = self.function_call
        return message


class Aggregate:
    """The chunks of one streamed chat completion (``chat``) or completion, merged."""

    def __init__(self, *, chat: bool) -> None:
        self.chat = chat
        self._top: Json = {}
        self._choices: dict[int, _Choice] = {}
        self.usage: object = None

    def add(self, chunk: object) -> None:
        """Merge one chunk (an event's JSON, parsed)."""
        if not isinstance(chunk, dict):
            return
        for key, value in chunk.items():
            if key == "choices":
                if isinstance(value, list):
                    self._add_choices(value)
            elif key == "usage":
                if isinstance(value, dict):
                    self.usage = value
            elif key == "object" or value is None:
                continue
            elif key not in self._top or key not in ("id", "created", "model"):
                self._top[key] = value

    def _add_choices(self, choices: list[Any]) -> None:
        for position, choice in enumerate(choices):
            if not isinstance(choice, dict):
                continue
            index = choice.get("index")
            index = index if isinstance(index, int) else position
            self._choices.setdefault(index, _Choice()).add(choice, chat=self.chat)

    @property
    def finished(self) -> bool:
        """Whether every choice has its finish reason."""
        return bool(self._choices) and all(c.fields.get("finish_reason") is not None
                                           for c in self._choices.values())

    def _choice(self, index: int, choice: _Choice) -> Json:
        out: Json = {"index": index}
        if self.chat:
            out["message"] = choice.chat_message()
        else:
            out["text"] = choice.message.get("text", "")
        out["logprobs"] = choice.logprobs
        out["finish_reason"] = choice.fields.pop("finish_reason", None)
        out.update(choice.fields)
        return out

    def body(self) -> str:
        """The response as a client that did not stream gets it, as JSON."""
        return orjson.dumps(self._response()).decode()

    def _response(self) -> Json:
        top = dict(self._top)
        out: Json = {"id": top.pop("id", None),
                     "object": "chat.completion" if self.chat else "text_completion",
                     "created": top.pop("created", None), "model": top.pop("model", None),
                     "choices": [self._choice(i, self._choices[i])
                                 for i in sorted(self._choices)]}
        if self.usage is not None:
            out["usage"] = self.usage
        out.update(top)
        return out


def usage_of(usage: object) -> Usage | None:
    """The token counts of an upstream's usage, for the job's final reply."""
    if not isinstance(usage, dict):
        return None
    counts = {k: usage.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
    return Usage(**{k: v for k, v in counts.items() if isinstance(v, int)})
