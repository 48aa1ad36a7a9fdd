"""Sentence embeddings with onnxruntime: all-MiniLM-L6-v2, mean pooling, L2 normalisation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workers.files import MINILM_TOKENIZER, MINILM_TOKENIZER_SHA256, verify

MAX_TOKENS = 256


class Embedder:
    def __init__(self, model: Path, *, threads: int = 1) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        verify(MINILM_TOKENIZER, size=466247, sha256=MINILM_TOKENIZER_SHA256)
        self._tokenizer = Tokenizer.from_file(str(MINILM_TOKENIZER))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(str(model), options,
                                                     providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """Normalised vectors and the number of tokens read."""
        import numpy as np

        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feed: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feed)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        vectors = pooled / np.clip(norms, 1e-12, None)
        return vectors.astype(float).tolist(), int(mask.sum())
