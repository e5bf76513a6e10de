"""Small test doubles shared by several test modules (not a test module itself)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict


class EmptyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class FakeDist:
    name: str
    version: str = "1.0"

    @property
    def metadata(self):
        return {"Name": self.name}


class FakeEntryPoint:
    """Stands in for importlib.metadata.EntryPoint; counts loads so laziness is observable."""

    def __init__(self, name, value, dist, target=None, error=None):
        self.name, self.value, self.dist = name, value, FakeDist(dist)
        self._target, self._error, self.loads = target, error, 0

    def load(self):
        self.loads += 1
        if self._error is not None:
            raise self._error
        return self._target


class HalfAttention:
    """An attention plugin missing ``forward``: violates the contract."""

    Config = EmptyConfig
    needs_previous_state = False

    def precompute(self, memory):
        return memory


def write_fake_export(root: Path) -> Path:
    """A directory with a valid manifest over two dummy files (enough for manifest checks)."""
    from seqkit.runtime.format import Manifest, hash_files, write_manifest

    root.mkdir(parents=True)
    (root / "encoder.onnx").write_bytes(b"encoder")
    (root / "decoder_step.onnx").write_bytes(b"decoder")
    write_manifest(root, Manifest(seqkit_version="0.1.0", opset=17, created="2026-01-01T00:00:00Z",
                                  files=hash_files(root)))
    return root
