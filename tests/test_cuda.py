"""Training and decoding on a GPU: the tests marked ``cuda`` (``pytest -m cuda tests/test_cuda.py``;
tools/gpu_check.sh runs them first).

Without a GPU every test here skips, saying so; that is not a hidden failure. The device errors
that need no GPU (``train.device: cuda:7``, cuda on a CPU-only torch) run on the CPU in
tests/test_devices.py.

Tolerances. The fused-vs-stepwise comparison runs in fp32 with TF32 off, where cuDNN's fused
LSTM and one cell call per step differ only in summation order (1e-5 on the CPU, see
tests/nn/test_decoders.py); 1e-4 leaves room for GPU reduction order. bf16 and fp16 runs are
compared with fp32 after 30 steps at ``rel=0.1``, as tests/test_train.py does for CPU bf16.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from seqkit.errors import SeqkitError
from seqkit.evaluate import evaluate_run
from seqkit.models import build_model
from seqkit.recipe import load_recipe
from seqkit.runs import build_task, load_run, seed_everything, train_run
from seqkit.tasks import entry
from seqkit.tasks.common import to_device
from seqkit.train import Trainer, pick_device
from test_devices import on_device  # tests/ is on sys.path (no __init__.py)

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(),
                                 reason="needs a CUDA GPU: torch.cuda.is_available() is False here")]

CUDA = torch.device("cuda")
STEPS = ["train.max_steps=30", "train.valid_every=30"]


@pytest.fixture
def fp32_matmuls():
    """TF32 off for an exact comparison (cuDNN's RNNs and cuBLAS may use it on Ampere and later)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def trained(tiny_recipe, name: str, *overrides: str) -> dict:
    return train_run(tiny_recipe, [*STEPS, "train.device=cuda", *overrides, f"run_dir={tiny_recipe.parent / name}"],
                     resume=False)


def test_bf16_autocast_learns_like_fp32_and_reports_gpu_memory(tiny_recipe):
    fp32 = trained(tiny_recipe, "fp32", "train.amp=none")
    bf16 = trained(tiny_recipe, "bf16", "train.amp=bf16")
    assert bf16["loss"] == pytest.approx(fp32["loss"], rel=0.1)
    assert bf16["loss"] != fp32["loss"]  # autocast really ran
    assert 0 < bf16["gpu_peak_gib"] < torch.cuda.get_device_properties(0).total_memory / 2**30


def test_fp16_trains_through_a_grad_scaler(tiny_recipe):
    recipe = load_recipe(tiny_recipe, ["train.device=cuda", "train.amp=fp16", f"run_dir={tiny_recipe.parent / 'fp16'}"])
    seed_everything(recipe.seed)
    run_dir = tiny_recipe.parent / "fp16"
    run_dir.mkdir()
    task = build_task(recipe, run_dir, resume=False, device=CUDA)
    trainer = Trainer(task, recipe.train, run_dir, seed=recipe.seed, metric=("loss", False))
    assert isinstance(trainer.scaler, torch.amp.GradScaler)
    before = [p.detach().clone() for p in task.model.parameters()]
    stats = [trainer._train_step([index]) for index in task.batches(0, recipe.seed)[:10]]
    assert trainer.step >= 5  # the scaler may skip the first steps while it finds its scale
    assert all(np.isfinite(s["nll"]) for s in stats) and trainer.scaler.get_scale() > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, task.model.parameters()))
    fp32 = trained(tiny_recipe, "fp32", "train.amp=none")
    fp16 = trained(tiny_recipe, "fp16-run", "train.amp=fp16")
    assert fp16["loss"] == pytest.approx(fp32["loss"], rel=0.1)


def lstm_model(tiny_recipe, input_feeding: bool = False):
    recipe = load_recipe(tiny_recipe, ["model.encoder.type=lstm", "model.decoder.type=lstm",
                                       "model.encoder.num_layers=2", "model.decoder.num_layers=2",
                                       f"model.decoder.input_feeding={str(input_feeding).lower()}"])
    torch.manual_seed(0)
    return build_model(recipe.model, entry(recipe.task).model, 14, 14, 0).eval()


def batch(device: torch.device):
    gen = torch.Generator().manual_seed(1)
    lengths = torch.tensor([9, 6, 3, 1])
    src = torch.randint(4, 14, (4, 9), generator=gen).masked_fill(torch.arange(9)[None] >= lengths[:, None], 0)
    return src.to(device), lengths, torch.randint(2, 14, (4, 7), generator=gen).to(device)


def stepwise_logits(model, src, lengths, tgt_in):
    memory, state = model.encode(src, lengths)
    steps = []
    for t in range(tgt_in.size(1)):
        logits, _, state = model.step(tgt_in[:, t], memory, state)
        steps.append(logits)
    return torch.stack(steps, 1)


def test_fused_cudnn_path_equals_stepping_and_the_cpu(tiny_recipe, fp32_matmuls):
    assert torch.backends.cudnn.is_available() and torch.backends.cudnn.enabled
    model = lstm_model(tiny_recipe)
    with torch.no_grad():
        cpu = model(*batch(torch.device("cpu")))
        model.to(CUDA)
        src, lengths, tgt_in = batch(CUDA)
        fused = model(src, lengths, tgt_in)  # one cuDNN LSTM call over the whole target
        stepped = stepwise_logits(model, src, lengths, tgt_in)
    torch.testing.assert_close(stepped, fused, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fused.cpu(), cpu, atol=1e-4, rtol=1e-4)


def test_input_feeding_steps_on_the_gpu_as_on_the_cpu(tiny_recipe, fp32_matmuls):
    model = lstm_model(tiny_recipe, input_feeding=True)
    with torch.no_grad():
        cpu = model(*batch(torch.device("cpu")))
        gpu = model.to(CUDA)(*batch(CUDA))
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)


def test_pinned_non_blocking_copy_is_safe_against_reuse_of_the_host_buffer():
    """to_device stages through pinned memory and copies without blocking: the host array can be
    overwritten at once (as a batcher reusing its buffer would) and the GPU still gets the batch."""
    batches = [np.arange(i, i + 4096, dtype=np.int64).reshape(64, 64) for i in range(8)]
    host = np.empty_like(batches[0])
    tensors = []
    for b in batches:
        host[:] = b
        tensors.append(to_device(host, CUDA))
        host[:] = -1  # reuse before the copy is known to be done
    torch.cuda.synchronize()
    for b, t in zip(batches, tensors):
        assert t.device.type == "cuda" and np.array_equal(t.cpu().numpy(), b)
    strided = to_device(batches[0][:, ::2], CUDA)
    assert np.array_equal(strided.cpu().numpy(), batches[0][:, ::2])


def test_checkpoint_saved_on_the_gpu_loads_on_the_cpu_and_back(tiny_recipe):
    run_dir = tiny_recipe.parent / "gpu"
    trained(tiny_recipe, "gpu", "train.max_steps=10", "train.valid_every=10")
    on_cpu = load_run(run_dir, "last", "cpu")
    on_gpu = load_run(run_dir, "last", "cuda")
    for (name, a), (_, b) in zip(on_cpu.model.state_dict().items(), on_gpu.model.state_dict().items()):
        assert a.device.type == "cpu" and b.device.type == "cuda" and torch.equal(a, b.cpu()), name
    # The optimizer state saved from GPU tensors resumes on the CPU, then on the GPU again.
    assert train_run(tiny_recipe, ["train.device=cpu", "train.max_steps=15", f"run_dir={run_dir}"], resume=True)["step"] == 15
    assert train_run(tiny_recipe, ["train.device=cuda", "train.max_steps=20", f"run_dir={run_dir}"], resume=True)["step"] == 20


def test_beam_search_on_the_gpu_scores_like_the_cpu(tiny_recipe, fp32_matmuls):
    run_dir = tiny_recipe.parent / "run"
    trained(tiny_recipe, "run")
    common = {"split": "test", "which": "best", "beam_size": 5, "strategy": None}
    gpu = evaluate_run(run_dir, **common, output=run_dir / "gpu.txt", device="cuda")
    cpu = evaluate_run(run_dir, **common, output=run_dir / "cpu.txt", device="cpu")
    same = sum(a == b for a, b in zip((run_dir / "gpu.txt").read_text().splitlines(),
                                      (run_dir / "cpu.txt").read_text().splitlines()))
    assert same >= 0.9 * cpu["sentences"]  # float order may flip a near-tie, rarely
    assert gpu["bleu"] == pytest.approx(cpu["bleu"], abs=1.0)


def test_a_gpu_index_past_the_last_is_one_error_naming_the_key(tiny_recipe):
    count = torch.cuda.device_count()
    assert pick_device(f"cuda:{count - 1}").index == count - 1
    message = f"train.device cuda:{count}: this machine has {count} CUDA device(s): cuda:0..cuda:{count - 1}"
    with pytest.raises(SeqkitError) as exc:
        pick_device(f"cuda:{count}")
    assert str(exc.value) == message
    done = subprocess.run([sys.executable, "-m", "seqkit.cli", "train", str(on_device(tiny_recipe, f"cuda:{count}"))],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [f"error: {message}"]
