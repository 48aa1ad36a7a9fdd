"""The GGUF header reader, on files written here the way llama.cpp's gguf writer lays them out."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from workers.files import ModelFileError
from workers.gguf import MAX_DEFAULT_CONTEXT, UNKNOWN_CONTEXT, read_header

UINT32, STRING, ARRAY, UINT64 = 4, 8, 9, 10


def text(value: str) -> bytes:
    data = value.encode()
    return struct.pack("<Q", len(data)) + data


def pair(key: str, kind: int, payload: bytes) -> bytes:
    return text(key) + struct.pack("<I", kind) + payload


def gguf(*pairs: bytes, version: int = 3) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, 0, len(pairs)) + b"".join(pairs)


def tokens(*names: str) -> bytes:
    return struct.pack("<IQ", STRING, len(names)) + b"".join(text(n) for n in names)


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(data)
    return path


def test_reads_the_architecture_and_its_context_length(tmp_path: Path) -> None:
    path = write(tmp_path, gguf(
        pair("general.architecture", STRING, text("qwen2")),
        pair("general.name", STRING, text("a model")),
        pair("tokenizer.ggml.tokens", ARRAY, tokens("<s>", "a", "b")),
        pair("tokenizer.ggml.scores", ARRAY, struct.pack("<IQ3f", 6, 3, 0.0, 0.5, 1.0)),
        pair("qwen2.context_length", UINT32, struct.pack("<I", 4096))))
    header = read_header(path)
    assert (header.architecture, header.context_length) == ("qwen2", 4096)
    assert header.default_context() == 4096


def test_a_huge_context_is_capped_by_default(tmp_path: Path) -> None:
    path = write(tmp_path, gguf(pair("general.architecture", STRING, text("llama")),
                                pair("llama.context_length", UINT64, struct.pack("<Q", 131072))))
    assert read_header(path).context_length == 131072
    assert read_header(path).default_context() == MAX_DEFAULT_CONTEXT


def test_a_gguf_that_does_not_say_gets_the_fallback(tmp_path: Path) -> None:
    path = write(tmp_path, gguf(pair("general.architecture", STRING, text("llama"))))
    assert read_header(path).context_length is None
    assert read_header(path).default_context() == UNKNOWN_CONTEXT


@pytest.mark.parametrize(("data", "message"), [
    (b"PK\x03\x04 a zip file", "is not a GGUF file"),
    (gguf(version=1), "GGUF version 1"),
    (gguf(pair("general.architecture", STRING, text("llama")))[:-3], "corrupt or cut short"),
    (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1 << 60), "corrupt or cut short"),
    (gguf(pair("general.architecture", 99, b"")), "corrupt or cut short"),
], ids=["foreign", "old-version", "cut-short", "absurd-length", "unknown-type"])
def test_files_that_do_not_read_are_model_file_errors(tmp_path: Path, data: bytes,
                                                       message: str) -> None:
    with pytest.raises(ModelFileError, match=message):
        read_header(write(tmp_path, data))


def test_the_bundled_model_declares_8192_tokens() -> None:
    from workers.files import SMOLLM2

    try:
        path = SMOLLM2.locate()
    except ModelFileError:
        pytest.skip("the local models are not installed")
    assert read_header(path).context_length == 8192
