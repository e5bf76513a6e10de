"""Ensemble decoding: one step function over several models, torch and onnxruntime members mixed."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from test_export import SRC_LINES, export_tiny  # tests/ is on sys.path (no __init__.py)

from seqkit.ensemble import EnsembleStepper, check_same_vocabulary, ensemble_translator
from seqkit.errors import InputError
from seqkit.runtime import load_model


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    a = export_tiny(tmp_path_factory.mktemp("ens_a"), enc="lstm", dec="lstm", attention="luong-general", seed=1)
    b = export_tiny(tmp_path_factory.mktemp("ens_b"), enc="gru", dec="gru", attention="bahdanau", seed=2)
    char = export_tiny(tmp_path_factory.mktemp("ens_c"), tokenizer="char")
    return a, b, char


def translate(*dirs, args=()) -> list[str]:
    stdin = "".join(s + "\n" for s in SRC_LINES).encode()
    done = subprocess.run([sys.executable, "-m", "seqkit.cli", "translate", *map(str, dirs), *args], input=stdin,
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode().splitlines()


def test_an_ensemble_of_one_model_twice_is_that_model(members):
    (_, model_a), _, _ = members
    assert translate(model_a, model_a, args=["--beam-size", "3"]) == translate(model_a, args=["--beam-size", "3"])


def test_step_log_probs_are_the_renormalized_mean(members):
    (_, model_a), (_, model_b), _ = members
    a, b = load_model(model_a, threads=1), load_model(model_b, threads=1)
    ens = EnsembleStepper([a.stepper, b.stepper])
    src, lengths = np.array([[4, 5, 6, a.src_tokenizer.eos_id]]), np.array([4])
    memory, state = ens.start(src, lengths)
    y = np.array([a.tgt_tokenizer.bos_id])
    got, _, _ = ens.step(y, memory, state)
    pa = a.stepper.step(y, *a.stepper.start(src, lengths))[0]
    pb = b.stepper.step(y, *b.stepper.start(src, lengths))[0]
    mean = (pa.astype(np.float64) + pb) / 2
    want = mean - np.log(np.exp(mean).sum(axis=1, keepdims=True))
    assert np.allclose(got, want, atol=1e-5) and np.allclose(np.exp(got).sum(axis=1), 1, atol=1e-5)


def test_torch_and_onnxruntime_members_mix(members):
    (run_a, model_a), (run_b, model_b), _ = members
    both_exported = translate(model_a, model_b, args=["--beam-size", "2"])
    mixed = translate(run_a, model_b, args=["--beam-size", "2"])
    assert both_exported == mixed and len(both_exported) == len(SRC_LINES)
    python = ensemble_translator(["a", "b"], [load_model(d, threads=1).translator(beam_size=2)
                                               for d in (model_a, model_b)]).translate(SRC_LINES)
    assert [r.text for r in python] == both_exported


def test_members_must_share_one_vocabulary(members):
    (_, model_a), _, (_, model_char) = members
    with pytest.raises(InputError, match="target vocabulary differs"):
        check_same_vocabulary(["a", "char"], [load_model(d, threads=1).translator() for d in (model_a, model_char)])
    done = subprocess.run([sys.executable, "-m", "seqkit.cli", "translate", str(model_a), str(model_char)],
                          input=b"ein hund\n", capture_output=True, timeout=300)
    assert done.returncode == 1 and done.stderr.decode().startswith(f"error: {model_char}: its target vocabulary")
    assert done.stderr.decode().count("\n") == 1
