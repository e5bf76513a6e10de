"""seqkit average: the mean of saved checkpoints as a run directory the other commands open."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from seqkit.average import average_run, expand_sources, run_checkpoints
from seqkit.errors import CheckpointError
from seqkit.runs import load_run, train_run


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from conftest import tiny_recipe_tree
    import yaml

    root = tmp_path_factory.mktemp("avg")
    tree = tiny_recipe_tree(root / "data", root / "run")
    tree["train"].update(max_steps=40, valid_every=10, keep_checkpoints=4)
    (root / "tiny.yaml").write_text(yaml.safe_dump(tree))
    train_run(root / "tiny.yaml", [], resume=False)
    other = dict(tree, run_dir=str(root / "wide"))
    other["model"] = {**tree["model"], "encoder": {**tree["model"]["encoder"], "hidden_size": 24}}
    other["train"] = {**tree["train"], "max_steps": 10}
    (root / "wide.yaml").write_text(yaml.safe_dump(other))
    train_run(root / "wide.yaml", [], resume=False)
    return root


def test_average_of_the_last_checkpoints_is_their_mean_and_opens_like_a_run(trained, tmp_path):
    run = trained / "run"
    chosen = expand_sources([run], last=3, steps=None)
    assert [d.name for d in chosen] == ["step-00000020", "step-00000030", "step-00000040"]
    out = average_run(chosen, tmp_path / "avg")
    got = load_file(str(out / "model.safetensors"))
    parts = [load_file(str(d / "model.safetensors")) for d in chosen]
    for name, value in got.items():
        want = sum(p[name].double() for p in parts) / 3
        assert torch.allclose(value.double(), want, atol=1e-6), name
    averaged = load_run(tmp_path / "avg")  # what evaluate, translate and export do
    assert averaged.checkpoint == out and averaged.recipe.run_dir == str(tmp_path / "avg")
    assert len(run_checkpoints(run)) == 4  # the source run is untouched


def test_average_cli_and_its_errors(trained, tmp_path):
    def seqkit(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "seqkit.cli", *args], capture_output=True, text=True, timeout=300)

    done = seqkit("average", str(trained / "run"), "--steps", "30,40", "-o", str(tmp_path / "a"))
    assert done.returncode == 0, done.stderr
    tr = seqkit("translate", str(tmp_path / "a"), "-i", str(trained / "data" / "split2.src"))
    assert tr.returncode == 0 and tr.stdout.count("\n") == 40, tr.stderr
    cases = [
        (["average", str(trained / "run" / "checkpoints" / "step-00000040"),
          str(trained / "wide" / "checkpoints" / "step-00000010"), "-o", str(tmp_path / "b")],
         "are different architectures (tensor 'decoder.attention.key_proj.weight' is (32, 32) in one, (32, 48) in the other)"),
        (["average", str(trained / "run"), "--steps", "35", "-o", str(tmp_path / "c")], "no checkpoint at step 35"),
        (["average", str(trained / "run"), "--last", "9", "-o", str(tmp_path / "d")], "--last 9 asks for more"),
        (["average", str(trained / "run"), "--last", "2", "-o", str(tmp_path / "a")], "already exists"),
        (["train", str(tmp_path / "a"), "--resume"], "an average of checkpoints (seqkit average) holds no optimizer"),
    ]
    for args, message in cases:
        bad = seqkit(*args)
        last_line = bad.stderr.splitlines()[-1]  # a resume logs its start (INFO lines) first
        assert bad.returncode == 1 and last_line.startswith("error: ") and message in last_line, bad.stderr
        assert bad.stderr.count("error:") == 1 and "Traceback" not in bad.stderr, bad.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # nothing half-written


def test_one_checkpoint_is_not_an_average(trained):
    with pytest.raises(CheckpointError, match="averaging needs at least 2"):
        expand_sources([run_checkpoints(trained / "run")[-1]], last=None, steps=None)
