"""Ensemble decoding: one step function over several models, torch and onnxruntime members mixed."""

from __future__ import annotations

import json
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


def seqkit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "seqkit.cli", *args], capture_output=True, text=True, timeout=300)


def test_an_exported_ensemble_is_one_directory_that_decodes_like_its_members(members, tmp_path):
    (run_a, model_a), (_, model_b), (_, model_char) = members
    out = tmp_path / "ens"
    done = seqkit("export", str(run_a), str(model_b), "-o", str(out))  # a run (exported here) and an export
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["ensemble.json", "manifest.json", "member-1", "member-2"]
    args = ["--beam-size", "2", "--scores"]
    assert translate(out, args=args) == translate(model_a, model_b, args=args)
    opened = load_model(out, threads=1)
    assert len(opened.members) == 2 and opened.config.task == "translation"
    assert opened.translate(SRC_LINES[:2], beam_size=2) == [r.split("\t")[-1] for r in translate(out, args=args)[:2]]

    src, ref = tmp_path / "src.txt", tmp_path / "ref.txt"
    src.write_text("".join(s + "\n" for s in SRC_LINES))
    ref.write_text("".join(s + "\n" for s in SRC_LINES[::-1]))
    scored = [json.loads(seqkit("evaluate", *m, "--src", str(src), "--ref", str(ref), "--beam-size", "2").stdout)
              for m in ([str(out)], [str(model_a), str(model_b)])]
    assert scored[0]["bleu"] == scored[1]["bleu"] and scored[1]["model"] == [str(model_a), str(model_b)]

    # A modified member file is caught by the ensemble's own manifest, by name.
    victim = out / "member-2" / "config.json"
    victim.write_text(victim.read_text().replace('"task"', '"task" '))
    bad = seqkit("translate", str(out), "-i", str(src))
    assert bad.returncode == 1 and bad.stderr == f"error: {victim}: sha256 mismatch with manifest.json; the file is corrupt or was modified\n"

    for args, message in [
        (["export", str(model_a), str(model_char), "-o", str(tmp_path / "x")], "its target vocabulary differs"),
        (["export", str(out), str(model_a), "-o", str(tmp_path / "y")], "an ensemble cannot be a member"),
        (["export", str(model_a), str(model_b), "-o", str(out)], "already exists"),
    ]:
        bad = seqkit(*args)
        assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and message in bad.stderr, bad.stderr
    assert not any(p.name.startswith((".", "x", "y")) for p in tmp_path.iterdir())  # nothing half-written


def test_evaluate_an_ensemble_on_the_recipe_split(members):
    (run_a, _), (run_b, _), _ = members
    both = json.loads(seqkit("evaluate", str(run_a), str(run_b), "--split", "valid", "--beam-size", "2").stdout)
    assert both["model"] == [str(run_a), str(run_b)] and both["split"] == "valid" and 0 <= both["bleu"] <= 100
    assert both["sentences"] > 0 and "bleu_signature" in both


def test_serve_opens_an_exported_ensemble(members, tmp_path):
    pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install -e '.[serve]'")
    pytest.importorskip("httpx", reason="starlette's TestClient needs httpx: pip install -e '.[test]'")
    from fastapi.testclient import TestClient

    from seqkit.export_ensemble import export_ensemble
    from seqkit.serve.app import create_app
    from seqkit.serve.schemas import ServeLimits

    (_, model_a), (_, model_b), _ = members
    out = export_ensemble([model_a, model_b], tmp_path / "ens")
    with TestClient(create_app(load_model(out, threads=1), ServeLimits())) as client:
        reply = client.post("/v1/translate", json={"texts": SRC_LINES[:3], "beam_size": 2})
        assert reply.status_code == 200, reply.text
        served = [t["text"] for t in reply.json()["translations"]]
    assert served == translate(model_a, model_b, args=["--beam-size", "2"])[:3]
