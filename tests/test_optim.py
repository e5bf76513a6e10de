"""Learning-rate schedules (OpenNMT-py's decay methods, linear/cosine decay) and early stopping
on any validation metric: their formulas, their recipe errors, and the Trainer using them."""

from __future__ import annotations

import json
import logging
import math

import pytest

from seqkit import checkpoint as ckpt
from seqkit.errors import RecipeError
from seqkit.optim import EarlyStop, LRSchedule
from seqkit.recipe import load_recipe
from seqkit.runs import train_run
from seqkit.tasks.seq2seq import Seq2SeqTask
from seqkit.train_config import ScheduleConfig

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def lr_at(step: int, base: float = 1.0, end: int | None = None, **schedule) -> float:
    return LRSchedule(ScheduleConfig(**schedule), base, end).lr(step)


def test_noam_follows_opennmt():
    # OpenNMT-py: lr * d^-0.5 * min(s^-0.5, s * w^-1.5), s = 1 at the first step.
    noam = {"type": "noam", "model_size": 512, "warmup_steps": 4000}
    assert lr_at(0, 2.0, **noam) == pytest.approx(2.0 * 512**-0.5 * 4000**-1.5)
    peak = lr_at(3999, 2.0, **noam)
    assert peak == pytest.approx(2.0 * 512**-0.5 * 4000**-0.5)
    assert lr_at(1999, 2.0, **noam) == pytest.approx(peak / 2) and lr_at(15999, 2.0, **noam) == pytest.approx(peak / 2)


def test_rsqrt_exponential_and_noamwd_follow_opennmt():
    assert lr_at(0, warmup_steps=100, type="rsqrt") == pytest.approx(0.1)  # 1 / sqrt(max(s, w))
    assert lr_at(399, warmup_steps=100, type="rsqrt") == pytest.approx(0.05)
    decay = {"type": "exponential", "factor": 0.5, "decay_steps": 10, "start_decay_steps": 20}
    # s = step + 1: no decay before s = 20, one at 20, two at 30
    assert [lr_at(s - 1, **decay) for s in (1, 19, 20, 29, 30)] == pytest.approx([1.0, 1.0, 0.5, 0.5, 0.25])
    wd = {"type": "noamwd", "model_size": 64, "warmup_steps": 10, "factor": 0.5, "decay_steps": 10,
          "start_decay_steps": 20}
    assert lr_at(29, **wd) == pytest.approx(64**-0.5 * 30**-0.5 * 0.25)


def test_linear_and_cosine_decay_to_min_lr_after_warmup():
    common = {"warmup_steps": 10, "min_lr": 0.0}
    for kind in ("linear", "cosine"):
        assert lr_at(4, end=110, type=kind, **common) == pytest.approx(0.5)  # linear warmup: (4 + 1) / 10
        assert lr_at(10, end=110, type=kind, **common) == pytest.approx(1.0)
        assert lr_at(60, end=110, type=kind, **common) == pytest.approx(0.5)
        assert lr_at(110, end=110, type=kind, **common) == pytest.approx(0.0)
        assert lr_at(500, end=110, type=kind, **common) == pytest.approx(0.0)
    assert lr_at(35, end=110, type="linear", **common) == pytest.approx(0.75)
    assert lr_at(35, end=110, type="cosine", **common) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_at(110, end=110, type="cosine", warmup_steps=10, min_lr=0.1) == pytest.approx(0.1)


@pytest.mark.parametrize("overrides, message", [
    (["train.schedule.type=noam"], "train.schedule: type 'noam' needs model_size"),
    (["train.schedule.type=noamwd", "train.schedule.model_size=64"], "warmup_steps > 0"),
    (["train.schedule.type=cosine", "train.max_steps=null"], "train: schedule type 'cosine' needs schedule.total_steps or max_steps"),
    (["train.schedule.type=linear", "train.max_steps=100", "train.schedule.warmup_steps=100"],
     "must be more than schedule.warmup_steps"),
    (["train.schedule.type=linear", "train.schedule.total_steps=5", "train.schedule.warmup_steps=5"],
     "train.schedule: total_steps (5) must be more than warmup_steps (5)"),
    (["train.schedule.decay_steps=0"], "train.schedule.decay_steps: Input should be greater than 0"),
    (["train.schedule.type=nom"], "train.schedule.type: unknown value 'nom'"),
    (["train.early_stopping=2", "train.early_stopping_metric=blue"],
     "train.early_stopping_metric: 'blue' is not a validation metric of task 'translation'; expected loss, ppl, "
     "bleu, chrf; did you mean 'bleu'?"),
    (["train.early_stopping_metric=chrf"], "early_stopping_metric needs early_stopping"),
])
def test_bad_schedule_and_stopping_values_name_the_key(tiny_recipe, overrides, message):
    with pytest.raises(RecipeError) as info:
        load_recipe(tiny_recipe, overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_schedule_end_defaults_to_max_steps(tiny_recipe):
    train = load_recipe(tiny_recipe, ["train.schedule.type=linear", "train.max_steps=50"]).train
    assert train.schedule_end() == 50
    train = load_recipe(tiny_recipe, ["train.schedule.type=cosine", "train.schedule.total_steps=80"]).train
    assert train.schedule_end() == 80


def test_early_stop_counts_validations_without_improvement():
    stop = EarlyStop("loss", higher_is_better=False)
    for loss in (3.0, 2.0, 2.5, 2.1, 1.5, 1.7):
        stop.observe({"loss": loss, "bleu": 1.0})
    assert (stop.best, stop.stale) == (1.5, 1)
    with pytest.raises(RecipeError, match=r"train.early_stopping_metric: 'rouge2' is not a number of the validation "
                                          r"log line; it has bleu, chrf"):
        EarlyStop("rouge2", True).observe({"bleu": 1.0, "chrf": 2.0, "valid_seconds": 0.1, "step": 5})


@pytest.fixture
def scripted_validation(monkeypatch):
    """Validation that reports rising BLEU and falling chrF, whatever the model does."""
    calls = []

    def validate(self, cfg):
        calls.append(1)
        return {"loss": 1.0, "ppl": math.e, "bleu": float(len(calls)), "chrf": 50.0 - len(calls)}

    monkeypatch.setattr(Seq2SeqTask, "validate", validate)
    return calls


def test_early_stopping_watches_the_metric_it_names(tiny_recipe, scripted_validation, caplog):
    base = ["train.max_steps=40", "train.valid_every=5", "train.early_stopping=2"]
    with caplog.at_level(logging.INFO, logger="seqkit"):
        metrics = train_run(tiny_recipe, [*base, "train.early_stopping_metric=chrf"], resume=False)
    # chrF is best at the first validation (step 5) and falls after: stop at the third (step 15).
    assert metrics["step"] == 15
    assert "stopping: early stopping: chrf did not improve for 2 validations" in caplog.text
    state = ckpt.load_checkpoint_state(ckpt.resolve_checkpoint(tiny_recipe.parent / "run", "last"))
    assert state["early_stopping"] == {"best": 49.0, "stale": 2}
    assert state["best"] == 3.0  # checkpoints are still selected on BLEU
    scripted_validation.clear()
    rerun = train_run(tiny_recipe, [*base, f"run_dir={tiny_recipe.parent / 'bleu'}"], resume=False)
    assert rerun["step"] == 40  # BLEU keeps improving: no early stop


def test_trainer_sets_the_scheduled_rate(tiny_recipe):
    train_run(tiny_recipe, ["train.max_steps=20", "train.log_every=5", "train.schedule.type=cosine",
                            "train.schedule.warmup_steps=5", "train.schedule.min_lr=0.0"], resume=False)
    events = [json.loads(line) for line in (tiny_recipe.parent / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = {e["step"]: e["lr"] for e in events if e.get("split") == "train"}
    schedule = LRSchedule(ScheduleConfig(type="cosine", warmup_steps=5, min_lr=0.0), 0.01, 20)
    assert set(logged) == {5, 10, 15, 20}
    assert [logged[s] for s in sorted(logged)] == pytest.approx([schedule.lr(s - 1) for s in sorted(logged)], rel=1e-3)
    assert logged[20] < logged[10] < logged[5]
