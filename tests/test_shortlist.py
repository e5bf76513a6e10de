"""The vocabulary shortlist: how it is built, a batch's candidates and rest sample, the shortlist
step graph (ids mapped back; scores under the whole vocabulary's softmax with the normalizer
estimated from the rest sample, exact when the sample is the whole rest, or renormalized over
the candidates with rest_sample 0), the default decided at export, and the full-vocabulary path
unchanged (torch and the export still decode identically)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from seqkit.errors import ModelError
from seqkit.export import export_run
from seqkit.runtime import load_model
from seqkit.runtime import format as fmt
from seqkit.runtime.stepper import OrtShortlistStepper
from seqkit.search import TopK
from seqkit.shortlist import Shortlist, ShortlistConfig, build_shortlist, default_on
from test_export import SRC_LINES, _translators, make_run

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_build_keeps_the_most_co_occurring_targets_per_source_and_the_frequent_ones():
    pairs = [([4, 5], [6, 7]), ([4], [6, 8]), ([5, 9], [7, 6]), ([4, 4], [9, 6])]
    table = build_shortlist(pairs, 10, 10, ShortlistConfig(per_source=2, frequent=1), specials=[3, 1])
    assert table.always.tolist() == [1, 3, 6]  # 6 is in every pair; the specials always
    # source 4 met 7, 8 and 9 once each (ties: lower id first); 6 is always there anyway
    assert table.per_source[4].tolist() == [7, 8]
    assert table.per_source[5].tolist() == [7, -1]
    assert table.per_source[9].tolist() == [7, -1]
    assert (table.per_source[[0, 1, 2, 3, 6, 7, 8]] == -1).all()


def test_candidates_are_the_sorted_union_over_the_real_source_tokens():
    per_source = np.full((6, 2), -1, dtype=np.int32)
    per_source[4], per_source[5], per_source[0] = [9, 7], [8, -1], [2, 2]  # row 0: padding, never read
    table = Shortlist(per_source, np.array([3, 1], dtype=np.int32))
    src = np.array([[4, 5, 3], [5, 0, 0]])
    assert table.candidates(src, np.array([3, 1])).tolist() == [1, 3, 7, 8, 9]


def test_save_and_load_check_the_vocabularies(tmp_path):
    table = Shortlist(np.array([[1, -1], [0, 2]], dtype=np.int32), np.array([0], dtype=np.int32))
    table.save(tmp_path / "s.npz")
    back = Shortlist.load(tmp_path / "s.npz", 2, 3)
    assert back.per_source.tolist() == table.per_source.tolist() and back.always.tolist() == [0]
    with pytest.raises(ValueError, match="outside the target vocabulary"):
        Shortlist.load(tmp_path / "s.npz", 2, 2)
    with pytest.raises(ValueError, match="expected \\(3, K\\)"):
        Shortlist.load(tmp_path / "s.npz", 3, 3)


def test_the_rest_sample_spreads_evenly_over_the_non_candidates():
    candidates = np.array([0, 1, 2, 10, 11], dtype=np.int64)
    rest = np.setdiff1d(np.arange(20), candidates)  # 15 ids
    got = Shortlist.rest_sample(candidates, 5, 20)
    assert got.tolist() == rest[[1, 4, 7, 10, 13]].tolist()  # the middle of each run of 3
    assert not np.isin(got, candidates).any() and got.dtype == np.int64
    assert Shortlist.rest_sample(candidates, 15, 20).tolist() == rest.tolist()  # all of it: exact
    assert Shortlist.rest_sample(candidates, 99, 20).tolist() == rest.tolist()
    assert Shortlist.rest_sample(candidates, 0, 20).tolist() == []
    assert Shortlist.rest_sample(np.arange(20), 4, 20).tolist() == []  # nothing left outside


def test_exports_from_before_the_rest_sample_read_as_normalized_over_the_candidates():
    info = {"default": True, "per_source": 2, "frequent": 3, "bleu_off": 1.0, "bleu_on": 1.0, "sentences": 4}
    assert fmt.ShortlistInfo.model_validate(info).rest_sample == 0


@pytest.mark.parametrize(("mode", "off", "on", "want"), [("auto", 30.0, 29.8, True), ("auto", 30.0, 29.7, False),
                                                         ("on", 30.0, 20.0, True), ("auto", 30.0, 31.0, True)])
def test_default_on_only_within_the_allowed_bleu_loss(mode, off, on, want):
    assert default_on(mode, off, on, 0.2) is want


def _shortlisted(root, **settings):
    """A tiny run exported with a small shortlist (2 per source piece, 3 frequent), mode on."""
    run_dir = make_run(root)
    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    recipe["export"] = {"shortlist": {"mode": "on", "per_source": 2, "frequent": 3, **settings}}
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return run_dir, export_run(run_dir, root / "model")


@pytest.fixture(scope="module")
def shortlisted(tmp_path_factory):
    """rest_sample as it comes (128): more than the tiny vocabulary's rest, so the whole rest."""
    return _shortlisted(tmp_path_factory.mktemp("shortlist"))


@pytest.fixture(scope="module", params=[0, 3])
def sampled(request, tmp_path_factory):
    """rest_sample 0 (normalized over the candidates, as exports before it) and 3 (a sample)."""
    return request.param, _shortlisted(tmp_path_factory.mktemp(f"shortlist-{request.param}"),
                                       rest_sample=request.param)[1]


def test_export_ships_the_shortlist_and_its_validation_check(shortlisted):
    _, model_dir = shortlisted
    assert {fmt.SHORTLIST_STEP_FILE, fmt.SHORTLIST_FILE} <= set(fmt.verify_manifest(model_dir).files)
    config = fmt.read_config(model_dir)
    assert config.shortlist is not None and config.shortlist.default  # mode on
    assert (config.shortlist.per_source, config.shortlist.frequent) == (2, 3)
    check = fmt.verify_manifest(model_dir).verification["shortlist_fp32"]
    assert check["sentences"] == len(SRC_LINES) and {"bleu_off", "bleu_on"} <= set(check)
    assert isinstance(load_model(model_dir, threads=1).stepper, OrtShortlistStepper)


@pytest.mark.parametrize("search", [{"strategy": "greedy"}, {"strategy": "beam", "beam_size": 5, "n_best": 2}])
def test_without_the_shortlist_the_export_still_decodes_like_torch(shortlisted, search):
    run_dir, model_dir = shortlisted
    torch_tr, _ = _translators(run_dir, model_dir, **search)
    ort_tr = load_model(model_dir, threads=1, shortlist=False).translator(**search)
    want, got = torch_tr.translate(SRC_LINES), ort_tr.translate(SRC_LINES)
    assert [r.tokens for r in got] == [r.tokens for r in want]


def _first_step(model_dir):
    """(full stepper, shortlist stepper, memory, state, y, full log-probs) at the first step."""
    full, short = load_model(model_dir, threads=1, shortlist=False).stepper, load_model(model_dir, threads=1).stepper
    tok = load_model(model_dir, threads=1).src_tokenizer
    rows = [tok.encode(line) + [tok.eos_id] for line in SRC_LINES[:3]]
    src = np.zeros((3, max(map(len, rows))), dtype=np.int64)
    for i, r in enumerate(rows):
        src[i, : len(r)] = r
    lengths = np.array([len(r) for r in rows])
    memory, state = short.start(src, lengths)
    candidates, rest = short.shortlist_of(memory)
    assert candidates.tolist() == short.shortlist.candidates(src, lengths).tolist()
    assert len(candidates) < fmt.read_config(model_dir).tgt_vocab_size  # a strict subset here
    y = np.full(3, 2, dtype=np.int64)
    logp, _, _ = full.step(y, memory[: len(memory) - short.n_tail], state)
    return short, memory, state, y, logp.astype(np.float64)


def _check_scores(short, memory, state, y, want):
    """The shortlist stepper's top-k, eos and whole rows against ``want`` (N, C)."""
    candidates, _ = short.shortlist_of(memory)
    top, _, _ = short.step_top_k(y, memory, state, 4, eos_id=3)
    order = np.argsort(-want, axis=1, kind="stable")[:, :4]
    assert isinstance(top, TopK)
    np.testing.assert_array_equal(top.ids, candidates[order])  # vocabulary ids, not columns
    np.testing.assert_allclose(top.log_probs, np.take_along_axis(want, order, axis=1), atol=1e-5)
    np.testing.assert_allclose(top.eos, want[:, int(np.searchsorted(candidates, 3))], atol=1e-5)
    rows_out, _, _ = short.step(y, memory, state)  # whole rows: -inf outside the candidates
    outside = np.setdiff1d(np.arange(rows_out.shape[1]), candidates)
    assert np.isneginf(rows_out[:, outside]).all()
    np.testing.assert_allclose(rows_out[:, candidates], want, atol=1e-5)


def test_shortlist_scores_are_the_full_scores_when_the_sample_is_the_whole_rest(shortlisted):
    short, memory, state, y, logp = _first_step(shortlisted[1])
    candidates, rest = short.shortlist_of(memory)
    assert rest.tolist() == np.setdiff1d(np.arange(logp.shape[1]), candidates).tolist()
    _check_scores(short, memory, state, y, logp[:, candidates])  # the exact normalizer


def test_shortlist_scores_under_a_rest_sample_or_renormalized_over_the_candidates(sampled):
    size, model_dir = sampled
    assert fmt.read_config(model_dir).shortlist.rest_sample == size
    inputs = {i.name for i in load_model(model_dir, threads=1).stepper.step_session.get_inputs()}
    step_inputs = {i.name for i in load_model(model_dir, threads=1, shortlist=False).stepper.step_session.get_inputs()}
    # rows fed: the sample's rows come with the candidates', its ids are no input of their own
    assert inputs - step_inputs == {fmt.CANDIDATES, fmt.ROWS_WEIGHT, fmt.ROWS_BIAS}
    short, memory, state, y, logp = _first_step(model_dir)
    candidates, rest = short.shortlist_of(memory)
    assert len(rest) == size
    inside = np.exp(logp[:, candidates]).sum(axis=1, keepdims=True)
    scale = (logp.shape[1] - len(candidates)) / max(len(rest), 1)
    outside = scale * np.exp(logp[:, rest]).sum(axis=1, keepdims=True)
    _check_scores(short, memory, state, y, logp[:, candidates] - np.log(inside + outside))


def test_a_shortlist_of_every_id_decodes_as_the_full_vocabulary(shortlisted):
    _, model_dir = shortlisted
    model = load_model(model_dir, threads=1)
    vocab = model.config.tgt_vocab_size
    model.stepper.shortlist = Shortlist(np.full((model.config.src_vocab_size, 1), -1, dtype=np.int32),
                                        np.arange(vocab, dtype=np.int32))
    full = load_model(model_dir, threads=1, shortlist=False)
    for search in ({"strategy": "greedy"}, {"strategy": "beam", "beam_size": 3}):
        got = model.translator(**search).translate(SRC_LINES)
        want = full.translator(**search).translate(SRC_LINES)
        assert [r.tokens for r in got] == [r.tokens for r in want]


def test_forced_decoding_scores_over_the_full_vocabulary(shortlisted):
    from seqkit.evaluate import open_step_model

    _, model_dir = shortlisted
    assert not isinstance(open_step_model(model_dir)[0], OrtShortlistStepper)


def test_no_shortlist_when_frequent_covers_every_training_target(tmp_path):
    run_dir = make_run(tmp_path)
    out = export_run(run_dir, tmp_path / "model")  # auto; frequent 300 > the tiny vocabulary
    assert fmt.read_config(out).shortlist is None and fmt.SHORTLIST_STEP_FILE not in fmt.model_files(out)
    with pytest.raises(ModelError, match="has no vocabulary shortlist"):
        load_model(out, shortlist=True)
    with pytest.raises(ModelError, match="export.shortlist.mode: on, but"):
        export_run(run_dir, tmp_path / "model-on", shortlist="on")


def test_cli_translate_with_and_without_the_shortlist(shortlisted, tmp_path):
    from click.testing import CliRunner

    from seqkit.cli import cli

    _, model_dir = shortlisted
    src = tmp_path / "in.txt"
    src.write_text("\n".join(SRC_LINES[:3]) + "\n", encoding="utf-8")
    for flag, shortlist in (("--shortlist", True), ("--no-shortlist", False)):
        done = CliRunner().invoke(cli, ["translate", str(model_dir), "-i", str(src), flag])
        assert done.exit_code == 0, done.output
        want = load_model(model_dir, threads=1, shortlist=shortlist).translate(SRC_LINES[:3])
        assert done.output.splitlines() == want


def test_the_graph_takes_the_output_rows_once_per_batch(shortlisted):
    """New exports feed the output layer's rows (shortlist_rows.npz): the candidates' and the rest
    sample's in one product, taken once per batch; no per-step gather of them."""
    import onnx

    _, model_dir = shortlisted
    config = fmt.read_config(model_dir)
    assert config.shortlist.rows == "fed" and fmt.SHORTLIST_ROWS_FILE in fmt.verify_manifest(model_dir).files
    graph = onnx.load(str(model_dir / fmt.SHORTLIST_STEP_FILE)).graph
    inputs = {i.name for i in graph.input}
    assert {fmt.CANDIDATES, fmt.ROWS_WEIGHT, fmt.ROWS_BIAS} <= inputs and "rest_sample" not in inputs
    products = [n for n in graph.node if fmt.ROWS_WEIGHT in n.input]
    assert [n.op_type for n in products] == ["MatMul"]
    assert [n.op_type for n in graph.node].count("LogSoftmax") == 1
    short = load_model(model_dir, threads=1).stepper
    memory, _ = short.start(np.array([[4, 5, 3]]), np.array([3]))
    candidates, rest = short.shortlist_of(memory)
    assert len(rest) > 0
    weight, bias = memory[len(memory) - short.n_tail + 2 :]
    ids = np.concatenate([candidates, rest])
    np.testing.assert_array_equal(weight, short.rows.weight[ids].T)
    np.testing.assert_array_equal(bias[: len(candidates)], short.rows.bias[candidates])
    scale = (config.tgt_vocab_size - len(candidates)) / len(rest)  # the sample stands for the whole rest
    np.testing.assert_allclose(bias[len(candidates) :], short.rows.bias[rest] + np.log(scale), rtol=1e-6)


def test_exports_whose_graph_gathers_the_rows_still_decode_the_same(tmp_path, monkeypatch):
    from seqkit import export_shortlist

    # Exports before fed rows: rows gathered in the graph, normalized over the candidates alone.
    run_dir, fed_dir = _shortlisted(tmp_path, rest_sample=0)
    monkeypatch.setattr(export_shortlist, "ROWS", "graph")
    old_dir = export_run(run_dir, tmp_path / "old")
    assert fmt.read_config(old_dir).shortlist.rows == "graph"
    assert fmt.SHORTLIST_ROWS_FILE not in fmt.verify_manifest(old_dir).files
    old, fed = _first_step(old_dir), _first_step(fed_dir)
    assert old[0].rows is None and old[0].n_tail == 2
    for a, b in zip(old[1][-2:], fed[1][len(fed[1]) - fed[0].n_tail :][:2]):
        np.testing.assert_array_equal(a, b)  # the same candidates and rest sample
    top_old, _, _ = old[0].step_top_k(old[3], old[1], old[2], 4, eos_id=3)
    top_fed, _, _ = fed[0].step_top_k(fed[3], fed[1], fed[2], 4, eos_id=3)
    np.testing.assert_array_equal(top_old.ids, top_fed.ids)
    np.testing.assert_allclose(top_old.log_probs, top_fed.log_probs, atol=1e-5)
    for search in ({"strategy": "greedy"}, {"strategy": "beam", "beam_size": 3}):
        got = load_model(old_dir, threads=1).translate(SRC_LINES, **search)
        assert got == load_model(fed_dir, threads=1).translate(SRC_LINES, **search)


def test_int8_shortlist_multiplies_int8_rows(tmp_path):
    """An int8 export's shortlist graph: int8 rows with a scale per id, DynamicQuantizeMatMul; its
    scores (the whole rest sampled: the exact normalizer) match the int8 full-vocabulary graph's."""
    import onnx

    run_dir = make_run(tmp_path)
    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    recipe["export"] = {"shortlist": {"mode": "on", "per_source": 2, "frequent": 3}}
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    model_dir = export_run(run_dir, tmp_path / "int8", quantize="int8")
    assert set(fmt.verify_manifest(model_dir).verification) >= {"shortlist_fp32", "shortlist_int8"}
    rows = load_model(model_dir, threads=1).stepper.rows
    assert rows.weight.dtype == np.int8 and rows.scale is not None
    graph = onnx.load(str(model_dir / fmt.SHORTLIST_STEP_FILE)).graph
    products = [n for n in graph.node if fmt.ROWS_WEIGHT in n.input]
    assert [n.op_type for n in products] == ["DynamicQuantizeMatMul"] and fmt.ROWS_SCALE in products[0].input
    short, memory, state, y, logp = _first_step(model_dir)  # logp: the int8 full graph's
    candidates, _ = short.shortlist_of(memory)
    top, _, _ = short.step_top_k(y, memory, state, 4, eos_id=3)
    want = logp[:, candidates]
    np.testing.assert_allclose(top.log_probs, np.take_along_axis(want, np.searchsorted(candidates, top.ids), axis=1),
                               atol=0.05)  # both int8, quantized alike (per column, symmetric)
    out = load_model(model_dir, threads=1).translate(SRC_LINES[:2], strategy="beam", beam_size=3)
    assert len(out) == 2 and all(isinstance(t, str) for t in out)


def test_rows_that_do_not_fit_the_model_are_a_model_error(shortlisted, tmp_path):
    import shutil

    from seqkit.runtime.rows import OutputRows

    _, model_dir = shortlisted
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    rows = OutputRows.load(broken / fmt.SHORTLIST_ROWS_FILE, fmt.read_config(broken).tgt_vocab_size)
    OutputRows(rows.weight[:-1], rows.bias[:-1]).save(broken / fmt.SHORTLIST_ROWS_FILE)
    manifest = fmt.read_manifest(broken)
    manifest.files = fmt.hash_files(broken)  # re-signed: the content, not the hash, is wrong
    fmt.write_manifest(broken, manifest)
    with pytest.raises(ModelError, match=r"shortlist_rows.npz: not the output rows of this model: weight has shape"):
        load_model(broken, threads=1)


def test_bench_exports_tool_times_exports_side_by_side(shortlisted, tmp_path, capsys):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).parent.parent / "tools" / "bench_exports.py"
    spec = importlib.util.spec_from_file_location("bench_exports", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    _, model_dir = shortlisted
    src, ref = tmp_path / "src.txt", tmp_path / "ref.txt"
    src.write_text("\n".join(SRC_LINES) + "\n", encoding="utf-8")
    ref.write_text("\n".join(SRC_LINES) + "\n", encoding="utf-8")
    out = tmp_path / "bench.json"
    assert tool.main([str(model_dir), str(model_dir), "--src", str(src), "--ref", str(ref), "--threads", "1",
                      "--repeats", "1", "--beam-size", "2", "--no-shortlist", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["shortlist"] for r in rows] == [False, False] and rows[0]["bleu"] == rows[1]["bleu"]
    assert rows[0]["vs_first"] == 1.0 and all(r["seconds"] > 0 for r in rows)
    assert "| export | shortlist |" in capsys.readouterr().out
    ref.write_text("one line\n", encoding="utf-8")
    assert tool.main([str(model_dir), "--src", str(src), "--ref", str(ref)]) == 1
    assert f"error: {ref}: 1 lines, but {src} has {len(SRC_LINES)}" in capsys.readouterr().err


def test_a_rest_sample_without_fed_rows_is_a_model_error(shortlisted, tmp_path):
    import json
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(shortlisted[1], broken)
    config = json.loads((broken / fmt.CONFIG_FILE).read_text())
    config["shortlist"]["rows"] = "graph"  # rest_sample stays 128
    (broken / fmt.CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(ModelError, match=r"config.json: shortlist: rest_sample 128 needs rows 'fed'"):
        fmt.read_config(broken)
