"""The command line as a user meets it: exit codes, one-line errors, no stray run directories."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml

from seqkit.rundir import sha256_file

ROOT = Path(__file__).resolve().parents[1]


def seqkit(*args: str, cwd: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "seqkit.cli", *args], capture_output=True, text=True,
                          cwd=cwd, input=stdin, timeout=300)


def test_help_lists_commands():
    out = seqkit("--help")
    assert out.returncode == 0
    for command in ("train", "evaluate", "translate", "plugins", "recipe"):
        assert command in out.stdout


def test_plugins_lists_builtin_tokenizers_with_distribution():
    out = seqkit("plugins")
    assert out.returncode == 0
    rows = [line.split() for line in out.stdout.splitlines()[1:]]
    toks = {r[1]: r for r in rows if r[0] == "tokenizer"}
    for name in ("char", "word", "sentencepiece"):
        assert toks[name][2] == "seqkit" and toks[name][4] == "ok"


def test_misspelled_attention_one_line_error_and_no_run_dir(tiny_recipe):
    tree = yaml.safe_load(tiny_recipe.read_text())
    tree["model"]["decoder"]["attention"]["type"] = "luong-genral"
    tiny_recipe.write_text(yaml.safe_dump(tree))
    out = seqkit("train", str(tiny_recipe))
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "model.decoder.attention.type" in lines[0] and "did you mean 'luong-general'?" in lines[0]
    assert not Path(tree["run_dir"]).exists()


def test_wrong_type_gives_path_and_expected_type(tiny_recipe):
    out = seqkit("train", str(tiny_recipe), "--set", "train.batch_tokens=many")
    assert out.returncode == 1
    assert "train.batch_tokens" in out.stderr and "integer" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tiny_recipe.parent / "run").exists()


def test_recipe_check_prints_resolved_recipe():
    out = seqkit("recipe", "check", str(ROOT / "recipes" / "translate.yaml"), "--set", "search.beam_size=3")
    assert out.returncode == 0, out.stderr
    resolved = yaml.safe_load(out.stdout)
    assert resolved["search"]["beam_size"] == 3
    assert resolved["train"]["label_smoothing"] == 0.1  # defaults are filled in


def test_train_evaluate_translate_round_trip(tiny_recipe):
    # train.progress is on, but stderr is a pipe here: no bar, plain lines every log_every steps.
    out = seqkit("train", str(tiny_recipe), "--set", "train.max_steps=20", "--set", "train.progress=true")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "\r" not in out.stderr and "Generating" not in out.stderr and "it/s" not in out.stderr
    assert "INFO step 5 train: loss " in out.stderr and "(step 5/20)" in out.stderr
    run_dir = tiny_recipe.parent / "run"
    log = (run_dir / "train.log").read_text(encoding="utf-8")
    assert "INFO seqkit 0.1.0, torch " in log and "torch threads" in log
    assert f"(sha256 {sha256_file(run_dir / 'recipe.yaml')[:16]})" in log
    assert "INFO step 10 train: loss " in log and "step 20 valid:" in log
    ev = seqkit("evaluate", str(run_dir), "--split", "test", "--beam-size", "2")
    assert ev.returncode == 0, ev.stderr[-2000:]
    assert '"bleu"' in ev.stdout and "nrefs:1" in ev.stdout
    tr = seqkit("translate", str(run_dir), "--beam-size", "2", stdin="a b c\n\nd e f g\n")
    assert tr.returncode == 0, tr.stderr[-2000:]
    lines = tr.stdout.split("\n")
    assert len(lines) == 4 and lines[1] == "" and lines[3] == ""


def test_missing_run_dir_is_one_clear_error(tmp_path):
    out = seqkit("evaluate", str(tmp_path / "nope"))
    assert out.returncode == 1
    assert out.stderr.strip() == f"error: {tmp_path / 'nope'}: no such run directory"


def _commands():
    from seqkit.cli import cli

    def walk(group, prefix):
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                yield from walk(command, (*prefix, name))
            else:
                yield (*prefix, name), command
    return list(walk(cli, ()))


def test_every_option_says_what_it_does_and_output_is_dash_o():
    for path, command in _commands():
        for param in command.params:
            if not isinstance(param, click.Option):
                continue
            name = f"seqkit {' '.join(path)} {param.opts[-1]}"
            assert param.help and len(param.help) > 10, f"{name}: no description in --help"
            if "-o" in param.opts:
                assert param.opts == ["-o", "--output"], f"{name}: -o is always -o/--output"
            if param.name in ("output", "output_path", "model_dir") and param.opts[-1] == "--output":
                assert "-o" in param.opts, f"{name}: an output option is -o/--output"
            assert "--beam" not in param.opts and "-O" not in param.opts and "--override" not in param.opts


def test_strategy_choices_are_the_search_configs():
    from typing import get_args

    from seqkit.cli import STRATEGIES
    from seqkit.search import SearchConfig

    from seqkit.cli_options import COVERAGE_PENALTIES, LENGTH_NORMS

    choices = {"strategy": STRATEGIES, "length_norm": LENGTH_NORMS, "coverage_penalty": COVERAGE_PENALTIES}
    for name, values in choices.items():
        assert values == get_args(SearchConfig.model_fields[name].annotation), name
    for path, command in _commands():
        for param in command.params:
            if param.name in choices:
                assert tuple(param.type.choices) == choices[param.name], path


def test_progress_bar_fills_against_the_budget_that_stops_the_run():
    from types import SimpleNamespace

    from seqkit.progress import Progress, budget

    cfg = SimpleNamespace(max_steps=1000, max_time=600.0, max_epochs=30, progress=True)
    trainer = SimpleNamespace(step=100, elapsed=300.0, epoch=2, batch_in_epoch=5)
    assert budget(cfg, trainer, 10) == (0.5, "5.0/10.0 min")  # time is nearest to done
    trainer.step = 900
    assert budget(cfg, trainer, 10) == (0.9, "step 900/1000")
    assert budget(SimpleNamespace(max_steps=None, max_time=None, max_epochs=None), trainer, 10) == (0.0, "step 900")

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    bar = Progress(cfg, 0, stream=screen)
    bar.update(trainer, {"tokens": 100, "seconds": 0.1, "nll": 50.0, "lr": 0.002}, 10)
    bar.close()
    assert "90%" in screen.getvalue() and "step 900/1000" in screen.getvalue()
    piped = io.StringIO()
    assert Progress(cfg, 0, stream=piped).bar is None and piped.getvalue() == ""


@pytest.mark.parametrize(("environ", "load", "expected"), [
    ({}, 0.3, {"GOMP_SPINCOUNT": "10000"}),  # an idle machine: spin briefly, then sleep
    ({}, 1.0, {"OMP_WAIT_POLICY": "PASSIVE"}),  # others hold half the CPUs: sleep at once
    ({"OMP_WAIT_POLICY": "ACTIVE"}, 0.0, {"OMP_WAIT_POLICY": "ACTIVE"}),  # the user's choice stays
    ({"GOMP_SPINCOUNT": "0"}, 5.0, {"GOMP_SPINCOUNT": "0"}),
])
def test_openmp_threads_spin_briefly_on_an_idle_machine(environ, load, expected):
    from seqkit.openmp import set_thread_wait, thread_wait

    said = set_thread_wait(environ, load=load, cpus=2)
    assert environ == expected
    assert said.startswith(thread_wait(environ))


def test_busy_cpus_counts_the_runnable_tasks_now_not_the_last_minute(tmp_path, monkeypatch):
    """A job that ended seconds ago still lifts the 1-minute load average; the runnable count of
    /proc/loadavg (less the reading task) does not. An unreadable file falls back to the average."""
    import os

    from seqkit.openmp import busy_cpus

    proc = tmp_path / "loadavg"
    proc.write_text("1.95 1.40 1.20 3/412 9876\n", encoding="ascii")  # two others running now
    assert busy_cpus(samples=3, interval=0.0, loadavg=proc) == (2.0, "busy CPUs")
    proc.write_text("1.95 1.40 1.20 1/412 9876\n", encoding="ascii")  # the job just ended
    assert busy_cpus(samples=3, interval=0.0, loadavg=proc) == (0.0, "busy CPUs")
    monkeypatch.setattr(os, "getloadavg", lambda: (1.5, 1.0, 0.5))
    proc.write_text("garbled\n", encoding="ascii")
    assert busy_cpus(loadavg=proc) == (1.5, "load average")
    assert busy_cpus(loadavg=tmp_path / "missing") == (1.5, "load average")


def test_the_seqkit_command_sets_the_wait_before_torch_loads(tmp_path):
    """cli.main sets how OpenMP threads wait; libgomp reads it when torch loads, so torch must not
    load before: importing seqkit.cli leaves torch out, and the running command sees the value."""
    code = ("import os, sys; import seqkit.cli as c; assert 'torch' not in sys.modules; "
            "sys.argv = ['seqkit', '--version']\n"
            "try:\n    c.main()\nexcept SystemExit:\n    pass\n"
            "print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] in ("10000 None", "None PASSIVE")  # which one: the load
