"""train.subword_sampling: training segmentations vary by epoch (sentencepiece unigram sampling,
BPE-dropout), evaluation and exported encodings do not; bad values name the key."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from seqkit.errors import RecipeError, SeqkitError
from seqkit.recipe import load_recipe
from seqkit.runs import load_run, train_run
from seqkit.subword import EpochSegmentation
from seqkit.tokenizers.spm import SentencePieceTokenizer
from seqkit.train_config import SubwordSampling

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

TEXTS = ["the quick brown fox jumps over the lazy dog", "a man rides a bike in the park",
         "two dogs play in the snow", "a woman reads a book on the sofa"] * 30


@pytest.fixture(scope="module", params=["unigram", "bpe"])
def spm_tok(request, tmp_path_factory) -> SentencePieceTokenizer:
    config = SentencePieceTokenizer.Config(vocab_size=40, model_type=request.param, num_threads=1)
    return SentencePieceTokenizer.train(TEXTS, config, tmp_path_factory.mktemp("spm"))


def test_sample_encode_is_seeded_and_varies(spm_tok):
    lines = TEXTS[:4]
    a, b = spm_tok.sample_encode(lines, 0.5, -1, 7), spm_tok.sample_encode(lines, 0.5, -1, 7)
    assert a == b
    samples = {str(spm_tok.sample_encode(lines, 0.5, -1, seed)) for seed in range(6)}
    assert len(samples) > 1
    assert all(spm_tok.decode(ids) == line for ids, line in zip(a, lines))  # a segmentation of the same text
    assert [spm_tok.encode(t) for t in lines] == [spm_tok.encode(t) for t in lines]  # encode never samples


def test_epoch_segmentation_varies_by_epoch_and_repeats_for_a_seed(spm_tok):
    src = TEXTS[:8]
    fixed_src = [spm_tok.encode(t) + [spm_tok.eos_id] for t in src]
    fixed_tgt = [spm_tok.encode(t) for t in src]
    seg = EpochSegmentation(SubwordSampling(alpha=0.5), spm_tok, spm_tok, (src, src), (fixed_src, fixed_tgt),
                            (100, 100), truncate_src=False)
    e0, e1 = seg.epoch(0, seed=3), seg.epoch(1, seed=3)
    assert e0 == seg.epoch(0, seed=3) and e0 != e1
    assert all(ids[-1] == spm_tok.eos_id for ids in e0[0]) and e0[0] != fixed_src
    target_only = EpochSegmentation(SubwordSampling(alpha=0.5, sides="target"), spm_tok, spm_tok, (src, src),
                                    (fixed_src, fixed_tgt), (100, 100), truncate_src=False)
    s, t = target_only.epoch(0, seed=3)
    assert s == fixed_src and t != fixed_tgt
    limits = (min(map(len, fixed_src)) + 1, min(map(len, fixed_tgt)) + 2)  # (fixed pairs are kept regardless)
    loose = EpochSegmentation(SubwordSampling(alpha=1.0), spm_tok, spm_tok, (src, src), (fixed_src, fixed_tgt),
                              (1000, 1000), truncate_src=False).epoch(0, seed=3)
    s, t = EpochSegmentation(SubwordSampling(alpha=1.0), spm_tok, spm_tok, (src, src), (fixed_src, fixed_tgt),
                             limits, truncate_src=False).epoch(0, seed=3)
    too_long = [i for i, ids in enumerate(loose[0]) if len(ids) > limits[0]]
    assert too_long and all(s[i] == fixed_src[i] for i in too_long)  # they keep their fixed ids
    assert all(len(a) <= limits[0] or a == b for a, b in zip(s, fixed_src))
    assert all(len(a) + 1 <= limits[1] or a == b for a, b in zip(t, fixed_tgt))


SPM = ["tokenizer.source.type=sentencepiece", "tokenizer.source.vocab_size=30", "tokenizer.source.num_threads=1"]


def test_training_samples_and_evaluation_does_not(tiny_recipe, caplog):
    sampling = ["train.subword_sampling.alpha=0.5", "train.max_steps=null", "train.max_epochs=2",
                "train.valid_every=1000"]
    with caplog.at_level(logging.INFO, logger="seqkit"), pytest.warns(UserWarning):
        train_run(tiny_recipe, [*SPM, *sampling], resume=False)
    changed = [int(n) for n in re.findall(r"subword sampling, epoch \d: (\d+) of 800 segmentations differ", caplog.text)]
    assert len(changed) == 2 and all(n > 100 for n in changed), caplog.text
    run = load_run(tiny_recipe.parent / "run")
    assert run.recipe.train.subword_sampling.alpha == 0.5
    valid = Path(run.recipe.data.valid.src).read_text(encoding="utf-8").splitlines()
    first = [run.src_tok.encode(line) for line in valid]
    assert [run.src_tok.encode(line) for line in valid] == first  # evaluation encodings are fixed
    from seqkit.evaluate import open_translator
    from seqkit.export import export_run

    translator = open_translator(run.run_dir, {"strategy": "greedy"})
    hyps = [r.text for r in translator.translate(valid[:10])]
    assert [r.text for r in translator.translate(valid[:10])] == hyps
    model = export_run(run.run_dir, tiny_recipe.parent / "model")
    exported = open_translator(model, {"strategy": "greedy"})
    assert [r.text for r in exported.translate(valid[:10])] == hyps
    assert exported.src_tokenizer.encode(valid[0]) == first[0]


@pytest.mark.parametrize("overrides, message", [
    (["train.subword_sampling.alpha=-0.1"], "train.subword_sampling.alpha: Input should be greater than 0"),
    (["train.subword_sampling.alpha=1.5"], "train.subword_sampling.alpha: Input should be less than or equal to 1"),
    (["train.subword_sampling.nbest_size=1"], "train.subword_sampling.nbest_size: nbest_size 1 would not sample"),
    (["train.subword_sampling.sides=src"], "train.subword_sampling.sides: unknown value 'src'"),
    (["train.subword_sampling.alpha=0.1", "data.streaming=true"], "train.subword_sampling: only translation and "
     "summarization from in-memory data"),
])
def test_bad_values_name_the_key(tiny_recipe, overrides, message):
    with pytest.raises(RecipeError) as info:
        load_recipe(tiny_recipe, overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_tokenizer_that_cannot_sample_is_refused(tiny_recipe):
    with pytest.raises(SeqkitError, match=r"^train.subword_sampling: the source tokenizer \(word\) cannot sample "):
        train_run(tiny_recipe, ["train.subword_sampling.alpha=0.1"], resume=False)
