"""What a GGUF file says about itself, read from its header without loading the model.

The header is the magic ``GGUF``, a version, the tensor and key-value counts, then typed
key-value pairs (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md). Reading stops
once the architecture and its context length are known, so the tokenizer's long arrays that
follow them are rarely read at all.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from workers.files import ModelFileError

MAGIC = b"GGUF"
# tokens of context given to a model when --context-length is not set: a model's own, up to this
# (llama.cpp's KV cache grows with it: a 7-8B model needs about 1 GiB for 8192 tokens)
MAX_DEFAULT_CONTEXT = 8192
UNKNOWN_CONTEXT = 2048  # for a GGUF that does not say

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
Value = int | float | bool | str | None  # None: an array, skipped


@dataclass(frozen=True, kw_only=True)
class GGUFHeader:
    architecture: str | None
    context_length: int | None

    def default_context(self) -> int:
        """The context to run with when none is asked for."""
        return min(self.context_length or UNKNOWN_CONTEXT, MAX_DEFAULT_CONTEXT)


class _Reader:
    def __init__(self, handle: BinaryIO, size: int) -> None:
        self._handle = handle
        self._size = size

    def take(self, count: int) -> bytes:
        if count > self._size - self._handle.tell():
            raise EOFError
        return self._handle.read(count)

    def unpack(self, fmt: str) -> int | float | bool:
        value: int | float | bool = struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]
        return value

    def count(self) -> int:
        return int(self.unpack("<Q"))

    def string(self) -> str:
        return self.take(self.count()).decode("utf-8")

    def value(self, kind: int) -> Value:
        if kind in _SCALARS:
            return self.unpack(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind != _ARRAY:
            raise ValueError(f"unknown value type {kind}")
        item_kind, items = int(self.unpack("<I")), self.count()
        if item_kind in _SCALARS:
            self.take(struct.calcsize(_SCALARS[item_kind]) * items)
        else:
            for _ in range(items):
                self.value(item_kind)
        return None


def read_header(path: Path) -> GGUFHeader:
    """The architecture and context length ``path`` declares; ModelFileError when it is not
    a readable GGUF file."""
    try:
        with path.open("rb") as handle:
            return _read(_Reader(handle, path.stat().st_size), path)
    except FileNotFoundError:
        raise ModelFileError(f"model file {path} does not exist") from None
    except IsADirectoryError:
        raise ModelFileError(f"model path {path} is a directory, not a GGUF file") from None
    except PermissionError:
        raise ModelFileError(f"model file {path} is not readable") from None
    except (EOFError, struct.error, UnicodeDecodeError, ValueError):
        raise ModelFileError(f"model file {path} is corrupt or cut short: its GGUF header "
                             "does not read") from None


def _read(reader: _Reader, path: Path) -> GGUFHeader:
    if reader.take(4) != MAGIC:
        raise ModelFileError(f"model file {path} is not a GGUF file (llama.cpp's format)")
    version = int(reader.unpack("<I"))
    if version not in (2, 3):
        raise ModelFileError(f"model file {path} is GGUF version {version}; "
                             "llama.cpp reads versions 2 and 3")
    reader.count()  # tensors
    values: dict[str, Value] = {}
    for _ in range(reader.count()):
        key = reader.string()
        values[key] = reader.value(int(reader.unpack("<I")))
        architecture = values.get("general.architecture")
        if isinstance(architecture, str) and f"{architecture}.context_length" in values:
            break
    architecture = values.get("general.architecture")
    if not isinstance(architecture, str):
        return GGUFHeader(architecture=None, context_length=None)
    context = values.get(f"{architecture}.context_length")
    return GGUFHeader(architecture=architecture,
                      context_length=context if isinstance(context, int)
                      and not isinstance(context, bool) and context > 0 else None)
