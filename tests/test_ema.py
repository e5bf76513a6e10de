"""train.ema (a moving average of the weights, saved beside them) and train.save_every."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from seqkit.ema import EMA_FILE, WeightEMA
from seqkit.errors import CheckpointError
from seqkit.runs import train_run


def test_moving_average_follows_the_formula_with_its_warm_up():
    model = torch.nn.Linear(3, 2)
    ema = WeightEMA(model, 0.9)
    want = {k: v.detach().clone().double() for k, v in model.state_dict().items()}
    for step in range(1, 30):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        ema.update(step)
        decay = min(0.9, (1 + step) / (10 + step))
        for name, value in model.state_dict().items():
            want[name] = decay * want[name] + (1 - decay) * value.double()
    got = ema.tensors(model)
    for name in want:
        assert torch.allclose(got[name].double(), want[name], atol=1e-5), name
        assert not torch.equal(got[name], model.state_dict()[name])  # the average lags the live weights


def checkpoints(run):
    return sorted(d.name for d in (run / "checkpoints").glob("step-*"))


def test_save_every_adds_checkpoints_and_ema_is_saved_and_resumed(tiny_recipe, tmp_path):
    keys = ["train.ema=0.8", "train.save_every=4", "train.valid_every=6", "train.keep_checkpoints=10"]
    straight = tmp_path / "straight"
    train_run(tiny_recipe, [*keys, "train.max_steps=12", f"run_dir={straight}"], resume=False)
    # Validations at 6 and 12, and checkpoints without validation at 4 and 8.
    assert checkpoints(straight) == ["step-00000004", "step-00000006", "step-00000008", "step-00000012"]
    validated = [json.loads(line)["step"] for line in (straight / "metrics.jsonl").read_text().splitlines()
                 if json.loads(line).get("split") == "valid"]
    assert validated == [6, 12]
    state = json.loads((straight / "checkpoints" / "step-00000004" / "state.json").read_text())
    assert set(state["sha256"]) == {"model.safetensors", "optimizer.safetensors", EMA_FILE}
    best = json.loads((straight / "checkpoints" / "best.json").read_text())["checkpoint"]
    assert best in ("step-00000006", "step-00000012")  # only validated checkpoints compete for best

    split = tmp_path / "split"
    train_run(tiny_recipe, [*keys, "train.max_steps=8", f"run_dir={split}"], resume=False)
    train_run(tiny_recipe, [*keys, "train.max_steps=12", f"run_dir={split}"], resume=True)
    final = "checkpoints/step-00000012/"
    a, b = load_file(str(straight / final / EMA_FILE)), load_file(str(split / final / EMA_FILE))
    raw = load_file(str(straight / final / "model.safetensors"))
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=1e-4, atol=1e-6), name  # resumed, not restarted
    assert any(not torch.equal(a[n], raw[n]) for n in a if a[n].is_floating_point())


def seqkit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "seqkit.cli", *args], capture_output=True, text=True, timeout=300)


def test_average_ema_opens_as_a_run_and_refuses_runs_without_one(tiny_recipe, tmp_path):
    run, plain = tmp_path / "run", tmp_path / "plain"
    train_run(tiny_recipe, ["train.ema=0.9", "train.max_steps=10"], resume=False)
    train_run(tiny_recipe, ["train.max_steps=10", f"run_dir={plain}"], resume=False)
    done = seqkit("average", str(run), "--ema", "--last", "1", "-o", str(tmp_path / "ema"))
    assert done.returncode == 0, done.stderr
    got = load_file(str(tmp_path / "ema" / "checkpoints" / "step-00000010" / "model.safetensors"))
    want = load_file(str(run / "checkpoints" / "step-00000010" / EMA_FILE))
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)
    tr = seqkit("translate", str(tmp_path / "ema"), "-i", str(tmp_path / "data" / "split2.src"))
    assert tr.returncode == 0 and tr.stdout.count("\n") == 40, tr.stderr

    for args, message in [
        (["average", str(plain), "--ema", "--last", "1", "-o", str(tmp_path / "x")],
         "holds no ema.safetensors (was it trained with train.ema?)"),
        (["average", str(plain), "--last", "1", "-o", str(tmp_path / "y")], "averaging needs at least 2"),
        (["train", str(tiny_recipe), "--set", "train.ema=1.5", "--set", f"run_dir={tmp_path / 'z'}"], "train.ema"),
        (["train", str(tiny_recipe), "--set", "train.save_every=0", "--set", f"run_dir={tmp_path / 'z'}"],
         "train.save_every"),
    ]:
        bad = seqkit(*args)
        assert bad.returncode != 0 and bad.stderr.count("error:") == 1 and message in bad.stderr, bad.stderr
        assert "Traceback" not in bad.stderr
    assert not any((tmp_path / name).exists() for name in "xyz")


def test_applied_swaps_the_average_in_and_the_weights_back():
    model = torch.nn.Linear(3, 2)
    ema = WeightEMA(model, 0.5)
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(5)
    live = {k: v.clone() for k, v in model.state_dict().items()}
    with ema.applied():
        inside = {k: v.clone() for k, v in model.state_dict().items()}
    assert all(torch.equal(inside[k], v) for k, v in ema.tensors(model).items())
    assert not torch.equal(inside["weight"], live["weight"])
    assert all(torch.equal(model.state_dict()[k], v) for k, v in live.items())  # restored exactly


def test_validate_ema_validates_and_decodes_the_average(tiny_recipe, tmp_path):
    """With train.validate_ema the validations score the moving average (the live weights train
    on unchanged), and a run directory opens with its checkpoint's ema.safetensors."""
    from seqkit.runs import load_run

    def valid_and_train(run):
        events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return ([e["loss"] for e in events if e.get("split") == "valid"],
                [e["loss"] for e in events if e.get("split") != "valid" and "loss" in e])

    keys = ["train.ema=0.9", "train.max_steps=12", "train.valid_every=6"]
    live, averaged = tmp_path / "live", tmp_path / "averaged"
    train_run(tiny_recipe, [*keys, f"run_dir={live}"], resume=False)
    train_run(tiny_recipe, [*keys, "train.validate_ema=true", f"run_dir={averaged}"], resume=False)
    (live_valid, live_train), (avg_valid, avg_train) = valid_and_train(live), valid_and_train(averaged)
    assert live_train == avg_train and live_train  # the same training
    assert len(live_valid) == len(avg_valid) == 2 and live_valid != avg_valid  # other weights validated
    best = json.loads((averaged / "checkpoints" / "best.json").read_text())["checkpoint"]
    want = load_file(str(averaged / "checkpoints" / best / EMA_FILE))
    got = load_run(averaged).model.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)
    raw = load_run(live).model.state_dict()  # without the key: the live weights, as before
    want_raw = load_file(str(live / "checkpoints" / json.loads((live / "checkpoints" / "best.json").read_text())
                             ["checkpoint"] / "model.safetensors"))
    assert all(torch.equal(raw[k], want_raw[k]) for k in want_raw)

    bad = seqkit("train", str(tiny_recipe), "--set", "train.validate_ema=true", "--set", f"run_dir={tmp_path / 'z'}")
    assert bad.returncode != 0 and bad.stderr.count("error:") == 1 and "validate_ema needs ema" in bad.stderr
    assert not (tmp_path / "z").exists()


def test_ema_file_of_another_shape_is_refused(tmp_path):
    model = torch.nn.Linear(3, 2)
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(2, 4), "bias": torch.zeros(2)}, str(tmp_path / EMA_FILE))
    with pytest.raises(CheckpointError, match="tensor 'weight' is missing or shaped differently"):
        WeightEMA(model, 0.9).load(tmp_path)


@pytest.mark.slow
def test_bench_combine_scores_every_row(tmp_path):
    """tools/bench_combine.py end to end on two tiny runs: every row decoded and scored."""
    import yaml
    from conftest import tiny_recipe_tree

    runs = []
    for seed in (1, 2):
        tree = tiny_recipe_tree(tmp_path / "data", tmp_path / f"run{seed}")
        tree["seed"] = seed
        tree["train"].update(max_steps=25, valid_every=10, save_every=5, ema=0.99, keep_checkpoints=6)
        (tmp_path / f"r{seed}.yaml").write_text(yaml.safe_dump(tree))
        train_run(tmp_path / f"r{seed}.yaml", [], resume=False)
        runs.append(str(tmp_path / f"run{seed}"))
    out = tmp_path / "out.json"
    done = subprocess.run([sys.executable, "tools/bench_combine.py", *runs, "--work", str(tmp_path / "work"),
                           "--json", str(out), "--threads", "1"], capture_output=True, text=True, timeout=600,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 8 and all(r["sentences"] == 40 and 0 <= r["bleu"] <= 100 for r in rows)
    by = {r["row"]: r for r in rows}
    # A model and its fp32 export decode the same text: the same BLEU.
    assert by["best checkpoint (A)"]["bleu"] == by["A exported (fp32, onnxruntime)"]["bleu"]
    assert by["ensemble of A and B (best checkpoints, torch)"]["bleu"] == \
        by["ensemble of A and B exported (fp32, onnxruntime)"]["bleu"]
