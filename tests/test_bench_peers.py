"""tools/bench_peers.py without the peer: the shared data, OpenNMT-py's config, and the seqkit
overrides that give OpenNMT-py's architecture (the peer itself needs its own venv: `setup`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import bench_peers as bp  # noqa: E402


def test_pieces_with_whitespace_travel_and_come_back():
    for piece in ["\u2581Hund", "\xa0", "\t", "a\u3000b", "<0x41>x"]:
        hidden = bp.hide_space(piece)
        assert not any(ch.isspace() for ch in hidden) and len(hidden.split()) == 1
        if "<0x" not in piece:
            assert bp.restore_space(hidden) == piece


def test_onmt_config_is_the_architecture_the_issue_names(tmp_path):
    cfg = yaml.safe_load(bp.onmt_config(tmp_path, 1216).read_text())
    assert (cfg["encoder_type"], cfg["layers"], cfg["hidden_size"], cfg["rnn_type"]) == ("brnn", 2, 256, "LSTM")
    assert (cfg["global_attention"], cfg["input_feed"], cfg["word_vec_size"]) == ("general", 1, 256)
    assert (cfg["batch_type"], cfg["batch_size"], cfg["train_steps"], cfg["learning_rate"]) == ("tokens", 3000, 1216, 0.002)
    assert cfg["share_vocab"] and cfg["share_decoder_embeddings"] and cfg["gpu_ranks"] == []


def test_seqkit_on_onmt_architecture_is_a_valid_recipe():
    """`seqkit recipe check` builds the model (on the meta device): the copy bridge needs the
    2 x 128 encoder's final state to be the decoder's 256."""
    sets = [arg for s in bp.ONMT_ARCH for arg in ("--set", s)]
    done = subprocess.run([sys.executable, "-m", "seqkit.cli", "recipe", "check", str(ROOT / "recipes" / "translate.yaml"),
                           *sets], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    model = yaml.safe_load(done.stdout)["model"]
    assert model["encoder"]["hidden_size"] == 128 and model["encoder"]["bidirectional"] is True
    assert model["decoder"]["hidden_size"] == 256 and model["decoder"]["input_feeding"] is True
    assert model["decoder"]["bridge"] == "copy" and model["decoder"]["attention"]["type"] == "luong-general"
