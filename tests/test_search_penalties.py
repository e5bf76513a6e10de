"""Beam search's length and coverage penalties and n-gram blocking exemptions: what each changes
(numpy step functions), their recipe errors, and torch vs the exported model for each setting."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from conftest import tiny_recipe_tree
from test_export import SRC_LINES, _translators, export_tiny  # tests/ is on sys.path (no __init__.py)
from test_search import BOS, EOS, ToyStep, _two_path_table, batch

from seqkit.beam import Penalties, beam_search
from seqkit.errors import ModelError, SeqkitError
from seqkit.inference import Translator
from seqkit.search import SearchConfig, block_ngrams

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class AttendingStep(ToyStep):
    """ToyStep whose attention after token y is ``attention[y]`` (default: even) over a 2-position source."""

    def __init__(self, attention: dict[int, list[float]]):
        super().__init__(vocab=5, table=_two_path_table())
        self.attention = attention

    def step(self, y_prev, memory, state):
        logp, _, state = super().step(y_prev, memory, state)
        return logp, np.array([self.attention.get(int(y), [0.5, 0.5]) for y in y_prev], dtype=np.float32), state


def _best(fn, **options) -> list[int]:
    src, lengths = batch([[4, 3]])
    return beam_search(fn, src, lengths, beam_size=3, bos_id=BOS, eos_id=EOS, max_len=5, **options)[0][0].tokens


def test_penalty_formulas():
    assert Penalties("wu", 1.0).factor(7) == pytest.approx(2.0)
    assert Penalties("wu", 0.5).factor(1) == pytest.approx(1.0)
    assert Penalties("avg").factor(7) == 7.0 and Penalties("none").factor(7) == 1.0
    cov = np.array([0.5, 1.0, 2.0])
    assert Penalties(coverage="wu", beta=0.2).coverage_cost(cov) == pytest.approx(-0.2 * np.log(0.5))
    assert Penalties(coverage="summary", beta=0.2).coverage_cost(cov) == pytest.approx(0.2 * 1.0)
    assert Penalties(coverage="none", beta=0.2).coverage_cost(cov) == 0.0
    assert Penalties("avg", coverage="summary", beta=0.5).score(-4.0, 2, cov) == pytest.approx(-2.0 - 0.5)
    assert np.isfinite(Penalties(coverage="wu", beta=1.0).coverage_cost(np.zeros(2)))  # floored, not infinite


def test_length_norm_changes_the_pick():
    fn = ToyStep(vocab=5, table=_two_path_table())
    # [] scores log 0.4 = -0.916 (L = 1); [4] scores 2 log 0.6 = -1.022 (L = 2).
    assert _best(fn, length_norm="none") == []
    assert _best(fn, length_norm="wu", length_penalty=0.0) == []
    assert _best(fn, length_norm="avg") == [4]  # -1.022 / 2 = -0.511
    src, lengths = batch([[4, 3]])
    hyp = beam_search(fn, src, lengths, beam_size=3, bos_id=BOS, eos_id=EOS, max_len=5, length_norm="avg")[0][0]
    assert hyp.score == pytest.approx(hyp.log_prob / 2, rel=1e-9) and hyp.log_prob == pytest.approx(2 * np.log(0.6), rel=1e-5)


def test_wu_coverage_penalty_prefers_the_hypothesis_that_covers_the_source():
    # [] attends to position 0 only (coverage 0.9, 0.1); [4] then attends to position 1 (1.0, 1.0).
    fn = AttendingStep({BOS: [0.9, 0.1], 4: [0.1, 0.9]})
    assert _best(fn, length_norm="none") == []
    assert _best(fn, length_norm="none", coverage_penalty="wu", coverage_beta=0.2) == [4]
    src, lengths = batch([[4, 3]])
    hyps = beam_search(fn, src, lengths, beam_size=3, bos_id=BOS, eos_id=EOS, max_len=5, n_best=2, length_norm="none",
                       coverage_penalty="wu", coverage_beta=0.2)[0]
    short = next(h for h in hyps if h.tokens == [])
    assert short.score == pytest.approx(np.log(0.4) + 0.2 * (np.log(0.9) + np.log(0.1)), rel=1e-5)


def test_summary_coverage_penalty_punishes_attending_a_position_twice():
    # [4] attends to position 0 twice (coverage 1.8, 0.2): the summary penalty costs beta * 0.8.
    fn = AttendingStep({BOS: [0.9, 0.1], 4: [0.9, 0.1]})
    assert _best(fn, length_norm="avg") == [4]
    assert _best(fn, length_norm="avg", coverage_penalty="summary", coverage_beta=1.0) == []
    assert _best(fn, length_norm="avg", coverage_penalty="wu", coverage_beta=1.0) == [4]  # wu ignores it


def test_coverage_penalty_needs_attention():
    fn = ToyStep(vocab=5, table=_two_path_table())
    src, lengths = np.zeros((1, 0), dtype=np.int64), np.array([0])  # no source: the step returns no attention
    with pytest.raises(ModelError, match="search.coverage_penalty"):
        beam_search(fn, src, lengths, beam_size=2, bos_id=BOS, eos_id=EOS, max_len=3, coverage_penalty="wu",
                    coverage_beta=0.2)


def test_ignore_when_blocking_exempts_ngrams_holding_the_token():
    history = np.array([[1, 2, 3, 1, 2]])
    for ignore, banned in (((), {3}), ((3,), set()), ((2,), set()), ((9,), {3})):
        logp = np.zeros((1, 6))
        block_ngrams(logp, history, 3, ignore)
        assert set(np.nonzero(np.isinf(logp[0]))[0]) == banned, ignore
    logp = np.zeros((1, 6))
    block_ngrams(logp, history, 1, [2])
    assert set(np.nonzero(np.isinf(logp[0]))[0]) == {1, 3}

    table = np.full((6, 6), -5.0)
    table[BOS, 4], table[4, 5], table[5, 4] = 0.0, 0.0, 0.0  # 4 5 4 5 4 5 ...
    fn = ToyStep(vocab=6, table=table)
    src, lengths = batch([[4, 3]])
    run = lambda **kw: beam_search(fn, src, lengths, beam_size=2, bos_id=BOS, eos_id=EOS, max_len=8,  # noqa: E731
                                   no_repeat_ngram_size=2, **kw)[0][0].tokens
    assert run()[:3] == [4, 5, 4] and run()[3] != 5  # "4 5" may not come twice
    assert run(ignore_when_blocking=[5]) == [4, 5] * 4  # every bigram holds 5: nothing is blocked


@pytest.mark.parametrize("override, where", [
    ({"length_norm": "average"}, "length_norm"),
    ({"coverage_penalty": "gnmt"}, "coverage_penalty"),
    ({"coverage_beta": -0.2}, "coverage_beta"),
    ({"coverage_beta": float("nan")}, "coverage_beta"),
    ({"coverage_penalty": "wu"}, "coverage_beta 0 changes nothing"),
    ({"ignore_when_blocking": [""]}, "ignore_when_blocking"),
    ({"length_penalty": -1.0}, "length_penalty"),
])
def test_bad_values_name_the_recipe_key(tiny_recipe, override, where):
    from seqkit.recipe import load_recipe

    key, value = next(iter(override.items()))
    with pytest.raises(SeqkitError) as info:
        load_recipe(tiny_recipe, [f"search.{key}={json.dumps(value) if value == value else '.nan'}"])
    message = str(info.value)
    assert "\n" not in message and "search" in message and where in message, message


def test_ignore_when_blocking_must_be_one_target_token(tmp_path):
    run_dir, _ = export_tiny(tmp_path, search={"max_len_offset": 5, "no_repeat_ngram_size": 2,
                                               "ignore_when_blocking": ["."]})
    torch_tr, ort_tr = _translators(run_dir, tmp_path / "model")
    assert torch_tr.ignore_ids == ort_tr.ignore_ids == [torch_tr.tgt_tokenizer.encode(".")[0]]
    cfg = SearchConfig(ignore_when_blocking=["no-such-word"])
    with pytest.raises(ModelError, match=r"search.ignore_when_blocking: 'no-such-word' is not one token"):
        Translator(torch_tr.fn, torch_tr.src_tokenizer, torch_tr.tgt_tokenizer, cfg)


PENALTY_SETTINGS = [
    {"length_norm": "none"},
    {"length_norm": "avg"},
    {"length_norm": "wu", "length_penalty": 0.6},
    {"coverage_penalty": "wu", "coverage_beta": 0.5},
    {"coverage_penalty": "summary", "coverage_beta": 1.0},
    {"length_norm": "avg", "coverage_penalty": "wu", "coverage_beta": 2.0, "no_repeat_ngram_size": 1,
     "ignore_when_blocking": ["a"], "min_len": 2},
]
TEST_SET = SRC_LINES + ["ein unbekanntes wort .", "der hund .", "zwei kinder lesen ein buch im park ."]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(run dir, exported dir, test lines): the tiny reverse-copy recipe after 60 steps, whose
    hypotheses end at many lengths (a random model's run to max_len or stop at once)."""
    from seqkit.export import export_run
    from seqkit.runs import train_run

    root = tmp_path_factory.mktemp("penalties")
    tree = tiny_recipe_tree(root / "data", root / "run")
    tree["train"].update(max_steps=60, valid_every=60)
    tree["search"] = {"beam_size": 4, "n_best": 2}
    (root / "recipe.yaml").write_text(yaml.safe_dump(tree), encoding="utf-8")
    train_run(root / "recipe.yaml", [], False)
    lines = Path(tree["data"]["valid"]["src"]).read_text(encoding="utf-8").splitlines()
    return root / "run", export_run(root / "run", root / "model"), lines


@pytest.mark.parametrize("setting", PENALTY_SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_torch_and_export_decode_the_test_set_identically(exported, setting):
    run_dir, model_dir, lines = exported
    torch_tr, ort_tr = _translators(run_dir, model_dir, **setting)
    want, got = torch_tr.translate(lines), ort_tr.translate(lines)
    assert [[c.text for c in r.n_best] for r in got] == [[c.text for c in r.n_best] for r in want]
    np.testing.assert_allclose([c.score for r in got for c in r.n_best], [c.score for r in want for c in r.n_best],
                               atol=1e-4)


def test_penalty_settings_change_the_decoded_test_set(exported):
    run_dir, model_dir, lines = exported
    outputs = {}
    for setting in [{}, *PENALTY_SETTINGS]:
        _, ort_tr = _translators(run_dir, model_dir, **setting)
        outputs[json.dumps(setting)] = [[c.text for c in r.n_best] for r in ort_tr.translate(lines)]
    assert len({json.dumps(v) for v in outputs.values()}) >= 4, outputs


def test_export_carries_the_defaults_and_the_cli_overrides_them(tmp_path):
    from seqkit.cli import cli
    from seqkit.runtime import load_model

    search = {"max_len_offset": 5, "beam_size": 4, "coverage_penalty": "summary", "coverage_beta": 1.0,
              "length_norm": "avg"}
    run_dir, model_dir = export_tiny(tmp_path, search=search)
    config = load_model(model_dir).search_config()
    assert (config.coverage_penalty, config.coverage_beta, config.length_norm) == ("summary", 1.0, "avg")
    text = "\n".join(TEST_SET) + "\n"
    runner = CliRunner()
    args = ["--length-norm", "wu", "--coverage-penalty", "wu", "--coverage-beta", "0.5", "--no-repeat-ngram-size", "2",
            "--min-len", "1"]
    outs = [runner.invoke(cli, ["translate", str(d), *args], input=text) for d in (run_dir, model_dir)]
    assert [o.exit_code for o in outs] == [0, 0], [o.output for o in outs]
    assert outs[0].output == outs[1].output
    _, ort_tr = _translators(run_dir, model_dir, length_norm="wu", coverage_penalty="wu", coverage_beta=0.5,
                             no_repeat_ngram_size=2, min_len=1)
    assert outs[1].output.splitlines() == [r.text for r in ort_tr.translate(TEST_SET)]
    bad = runner.invoke(cli, ["translate", str(model_dir), "--coverage-beta", "-1"], input=text)
    assert isinstance(bad.exception, SeqkitError) and str(bad.exception).startswith("--coverage-beta: ")
