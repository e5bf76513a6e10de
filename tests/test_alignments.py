"""``seqkit translate --alignments``: per output token the most-attended source token (Pharaoh
``j-t``), the same from the run directory (torch) and the exported model (onnxruntime)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from test_export import SRC_LINES, _translators, export_tiny  # tests/ is on sys.path (no __init__.py)

from seqkit.cli import cli
from seqkit.errors import SeqkitError
from seqkit.inference import TranslationResult, pharaoh_alignment

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
LINES = SRC_LINES[:5] + ["", "ein unbekanntes wort ."]


def test_pharaoh_alignment_is_the_argmax_over_source_tokens():
    attention = np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.0, 0.0, 1.0]])  # 3 tokens + eos row
    result = TranslationResult("x y z", [5, 6, 7], 0.0, [], attention, [8, 9, 3])  # source: 2 tokens + eos
    assert pharaoh_alignment(result) == "1-0 0-1 0-2"  # the source eos column never wins
    assert pharaoh_alignment(TranslationResult("", [], 0.0, [], None, [])) == ""
    with pytest.raises(SeqkitError, match="--alignments: the model returns no attention"):
        pharaoh_alignment(TranslationResult("x", [5], 0.0, [], None, [8, 3]))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return export_tiny(tmp_path_factory.mktemp("align"), search={"max_len_offset": 3, "beam_size": 3})


@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_torch_and_export_print_the_same_alignments(exported, strategy):
    run_dir, model_dir = exported
    text = "\n".join(LINES) + "\n"
    runner = CliRunner()
    outs = [runner.invoke(cli, ["translate", str(d), "--alignments", "--strategy", strategy], input=text)
            for d in (run_dir, model_dir)]
    assert [o.exit_code for o in outs] == [0, 0], [o.output for o in outs]
    assert outs[0].output == outs[1].output
    rows = outs[1].output.splitlines()
    assert len(rows) == len(LINES) and rows[5] == " ||| "
    _, ort = _translators(run_dir, model_dir, strategy=strategy)
    for row, result in zip(rows, ort.translate(LINES, return_attention=True)):
        text_part, align = row.split(" ||| ")
        assert text_part == result.text
        pairs = [tuple(map(int, p.split("-"))) for p in align.split()]
        assert [t for _, t in pairs] == list(range(len(result.tokens)))  # one pair per output token
        for j, t in pairs:
            assert 0 <= j < len(result.src_tokens) - 1
            assert result.attention[t, j] == result.attention[t, : len(result.src_tokens) - 1].max()


def test_alignments_with_scores_and_refusals(exported, tmp_path):
    run_dir, model_dir = exported
    runner = CliRunner()
    scored = runner.invoke(cli, ["translate", str(model_dir), "--alignments", "--scores"], input=LINES[0] + "\n")
    log_prob, score, rest = scored.output.rstrip("\n").split("\t")
    assert scored.exit_code == 0 and float(log_prob) <= 0 and " ||| " in rest
    n_best = runner.invoke(cli, ["translate", str(model_dir), "--alignments", "--n-best", "2"], input="a\n")
    assert isinstance(n_best.exception, SeqkitError) and "not with --n-best" in str(n_best.exception)
    _, no_attention = export_tiny(tmp_path, enc="rnn", dec="rnn", attention="none")
    bare = runner.invoke(cli, ["translate", str(no_attention), "--alignments"], input=LINES[0] + "\n")
    assert isinstance(bare.exception, SeqkitError) and str(bare.exception).startswith("--alignments: the model "
                                                                                        "returns no attention")
