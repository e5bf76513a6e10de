"""Shared fixtures: a tiny parallel corpus and recipe that train in seconds on CPU."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

VOCAB = "a b c d e f g h i j".split()


def make_reverse_corpus(directory: Path, n: int, seed: int) -> tuple[Path, Path]:
    """Source: random words; target: the same words reversed. Learnable by any attention model."""
    rng = random.Random(seed)
    src_lines, tgt_lines = [], []
    for _ in range(n):
        words = [rng.choice(VOCAB) for _ in range(rng.randint(3, 7))]
        src_lines.append(" ".join(words))
        tgt_lines.append(" ".join(reversed(words)))
    directory.mkdir(parents=True, exist_ok=True)
    src, tgt = directory / f"split{seed}.src", directory / f"split{seed}.tgt"
    src.write_text("\n".join(src_lines) + "\n", encoding="utf-8")
    tgt.write_text("\n".join(tgt_lines) + "\n", encoding="utf-8")
    return src, tgt


def tiny_recipe_tree(data_dir: Path, run_dir: Path) -> dict:
    train_src, train_tgt = make_reverse_corpus(data_dir, 400, seed=1)
    valid_src, valid_tgt = make_reverse_corpus(data_dir, 40, seed=2)
    return {
        "task": "translation",
        "run_dir": str(run_dir),
        "seed": 3,
        "data": {
            "format": "parallel",
            "train": {"src": str(train_src), "tgt": str(train_tgt)},
            "valid": {"src": str(valid_src), "tgt": str(valid_tgt)},
            "test": {"src": str(valid_src), "tgt": str(valid_tgt)},
        },
        "tokenizer": {"shared": True, "source": {"type": "word"}},
        "model": {
            "encoder": {"type": "gru", "embedding_dim": 16, "hidden_size": 16, "num_layers": 1, "dropout": 0.1},
            "decoder": {"type": "gru", "embedding_dim": 16, "hidden_size": 32, "num_layers": 1, "dropout": 0.1,
                        "attention": {"type": "luong-general"}},
        },
        "train": {"batch_tokens": 256, "max_steps": 30, "valid_every": 10, "log_every": 5,
                  "progress": False, "num_threads": 1, "optimizer": {"lr": 0.01}},
        "search": {"beam_size": 2},
    }


@pytest.fixture
def tiny_recipe(tmp_path: Path) -> Path:
    """Path of a tiny translation recipe (reverse task) whose run_dir is tmp_path/run."""
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe_tree(tmp_path / "data", tmp_path / "run")), encoding="utf-8")
    return path


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one torch thread, and the CPU is shared with other tests."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
