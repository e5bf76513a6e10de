"""Models: building from specs, recipe-time validation, LM state carry, weights I/O,
TorchStepper, ONNX-exportable step, and every attention/cell learning a tiny reverse task."""

import itertools

import numpy as np
import pytest
import torch

from seqkit.errors import CheckpointError, PluginError
from seqkit.model_config import ModelConfig
from seqkit.models import (
    LanguageModel,
    Seq2Seq,
    TorchStepper,
    build_model,
    load_weights,
    save_weights,
)
from seqkit.nn.attention import NoAttention
from seqkit.tasks.common import check_model

VOCAB, PAD, BOS, EOS = 10, 0, 2, 3


def tiny_config(enc="gru", dec="lstm", attention="luong-general", input_feeding=False, dropout=0.0, **model):
    spec = {"type": attention}
    if attention in ("bahdanau", "luong-concat"):
        spec["attention_size"] = 32
    drop = {"dropout": dropout, "embedding_dropout": dropout}
    return ModelConfig(
        encoder={"type": enc, "embedding_dim": 16, "hidden_size": 16, "num_layers": 1, **drop},
        decoder={"type": dec, "embedding_dim": 16, "hidden_size": 32, "num_layers": 1, "attention": spec,
                 "input_feeding": input_feeding, **drop},
        **model,
    )


def lm_config(dec="lstm", **options):
    return ModelConfig(decoder={"type": dec, "embedding_dim": 8, "hidden_size": 16, "num_layers": 2, **options})


def source_batch():
    src = torch.tensor([[4, 5, 6, 7], [8, 9, 0, 0]])
    return src, torch.tensor([4, 2])


# -- building and validation ------------------------------------------------------------------
def test_build_seq2seq_and_forward():
    torch.manual_seed(0)
    model = build_model(tiny_config(), "seq2seq", VOCAB, VOCAB + 3, PAD)
    assert isinstance(model, Seq2Seq)
    src, lengths = source_batch()
    logits = model(src, lengths, torch.tensor([[BOS, 4, 5], [BOS, 6, 0]]))
    assert logits.shape == (2, 3, VOCAB + 3)
    assert model.encoder.embedding.num_embeddings == VOCAB


def test_build_language_model_forces_no_attention():
    model = build_model(lm_config(), "lm", None, VOCAB, PAD)
    assert isinstance(model, LanguageModel)
    assert isinstance(model.decoder.attention, NoAttention)
    assert model.decoder.config.attention == {"type": "none"}


def test_default_config_builds():
    cfg = ModelConfig()
    check_model(cfg, "seq2seq")
    model = build_model(cfg, "seq2seq", 50, 60, PAD)
    assert model.decoder.config.hidden_size == 512 and model.encoder.output_size == 512


@pytest.mark.parametrize(
    "cfg,kind,pattern",
    [
        (ModelConfig(decoder={"type": "lstm", "attention": {"type": "luong-genral"}}), "seq2seq",
         r"^model\.decoder\.attention\.type: unknown attention 'luong-genral'; did you mean 'luong-general'"),
        (ModelConfig(decoder={"type": "lstmm"}), "seq2seq", r"^model\.decoder\.type: unknown decoder 'lstmm'"),
        (ModelConfig(encoder={"type": "gru", "hiden_size": 3}), "seq2seq",
         r"^model\.encoder\.hiden_size: unknown key; did you mean 'hidden_size'"),
        (ModelConfig(decoder={"type": "gru", "attention": {"type": "bahdanau", "size": 3}}), "seq2seq",
         r"^model\.decoder\.attention\.size: unknown key"),
        (ModelConfig(decoder={"type": "gru", "hidden_size": 300, "attention": {"type": "luong-dot"}}), "seq2seq",
         r"^model\.decoder\.attention: luong-dot .*\(300\).*\(512"),
        (ModelConfig(decoder={"type": "gru", "hidden_size": 300, "bridge": "copy"}), "seq2seq",
         r"^model\.decoder\.bridge: 'copy'"),
        (ModelConfig(decoder={"type": "gru", "attention": {"type": "bahdanau"}}), "lm",
         r"^model\.decoder\.attention: a language model has no source"),
        (ModelConfig(encoder={"type": "gru", "embedding_dim": 64}, share_embeddings=True), "seq2seq",
         r"^model\.share_embeddings: source embedding .* differ"),
        (ModelConfig(), "parsing", r"^seqkit.models has no model of kind 'parsing'; kinds: seq2seq, lm, classifier"),
        (ModelConfig(encoder={"type": "lstmm"}), "classifier", r"^model\.encoder"),
    ],
)
def test_check_model_errors(cfg, kind, pattern):
    with pytest.raises(PluginError, match=pattern):
        check_model(cfg, kind)


def test_model_config_rejects_unknown_keys():
    with pytest.raises(Exception, match="max_length"):
        ModelConfig(max_length=3)


def test_share_embeddings():
    cfg = tiny_config(share_embeddings=True)
    model = build_model(cfg, "seq2seq", VOCAB, VOCAB, PAD)
    assert model.encoder.embedding.weight is model.decoder.embedding.weight
    assert model.decoder.output.weight is model.decoder.embedding.weight


# -- language model -----------------------------------------------------------------------------
@pytest.mark.parametrize("dec", ["lstm", "gru", "rnn"])
def test_language_model_carries_state_across_chunks(dec):
    torch.manual_seed(0)
    model = build_model(lm_config(dec, dropout=0.0, embedding_dropout=0.0), "lm", None, VOCAB, PAD).eval()
    stream = torch.randint(4, VOCAB, (2, 8))
    with torch.no_grad():
        whole, _ = model(stream)
        first, state = model(stream[:, :5])
        second, _ = model(stream[:, 5:], tuple(s.detach() for s in state))
        torch.testing.assert_close(torch.cat([first, second], 1), whole, atol=1e-5, rtol=1e-5)
        logits, attn, _ = model.step(stream[:, 0], (), model.init_state(2))
    torch.testing.assert_close(logits, whole[:, 0], atol=1e-5, rtol=1e-5)
    assert attn.shape == (2, 0)


# -- weights I/O ----------------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_config(share_embeddings=True, dropout=0.1)
    model = build_model(cfg, "seq2seq", VOCAB, VOCAB, PAD).eval()
    path = tmp_path / "model.safetensors"
    save_weights(model, path)
    torch.manual_seed(1)
    other = build_model(cfg, "seq2seq", VOCAB, VOCAB, PAD).eval()
    src, lengths = source_batch()
    tgt = torch.tensor([[BOS, 4, 5], [BOS, 6, 7]])
    assert not torch.allclose(other(src, lengths, tgt), model(src, lengths, tgt))
    load_weights(other, path)
    torch.testing.assert_close(other(src, lengths, tgt), model(src, lengths, tgt), atol=0, rtol=0)
    assert other.encoder.embedding.weight is other.decoder.output.weight  # ties survive loading


def test_load_mismatching_weights_names_file_and_tensor(tmp_path):
    path = tmp_path / "model.safetensors"
    save_weights(build_model(tiny_config(), "seq2seq", VOCAB, VOCAB, PAD), path)
    bigger = build_model(tiny_config(), "seq2seq", VOCAB + 1, VOCAB, PAD)
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*'encoder\.embedding\.weight'.*\(10, 16\)"):
        load_weights(bigger, path)
    other_cell = build_model(tiny_config(enc="lstm"), "seq2seq", VOCAB, VOCAB, PAD)
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load_weights(other_cell, path)
    with pytest.raises(CheckpointError, match="missing.safetensors"):
        load_weights(bigger, tmp_path / "missing.safetensors")


# -- TorchStepper -------------------------------------------------------------------------------------
@pytest.mark.parametrize("attention,input_feeding", [("luong-general", False), ("bahdanau", True), ("none", False)])
def test_torch_stepper(attention, input_feeding):
    torch.manual_seed(0)
    model = build_model(tiny_config("lstm", "lstm", attention, input_feeding), "seq2seq", VOCAB, VOCAB, PAD).eval()
    stepper = TorchStepper(model, torch.device("cpu"))
    src = np.array([[4, 5, 6, 7], [8, 9, 0, 0]], dtype=np.int64)
    memory, state = stepper.start(src, np.array([4, 2], dtype=np.int64))
    log_probs, attn, state = stepper.step(np.array([BOS, BOS], dtype=np.int64), memory, state)
    assert log_probs.shape == (2, VOCAB) and log_probs.dtype == np.float32
    np.testing.assert_allclose(np.exp(log_probs).sum(-1), 1.0, rtol=1e-5)
    if attention == "none":
        assert attn is None and memory == ()
    else:
        assert attn.shape == (2, 4) and attn.dtype == np.float32
        assert np.all(attn[1, 2:] == 0)
    # beam-style reordering: row 1 twice, then row 0
    index = np.array([1, 1, 0], dtype=np.int64)
    memory3, state3 = stepper.select_memory(memory, index), stepper.select_state(state, index)
    log_probs3, _, _ = stepper.step(np.array([5, 5, 5], dtype=np.int64), memory3, state3)
    reference, _, _ = stepper.step(np.array([5, 5], dtype=np.int64), memory, state)
    np.testing.assert_allclose(log_probs3, reference[[1, 1, 0]], atol=1e-6)


def test_torch_stepper_language_model():
    model = build_model(lm_config("gru", input_feeding=True), "lm", None, VOCAB, PAD).eval()
    stepper = TorchStepper(model)
    memory, state = stepper.start(np.zeros((3, 0), dtype=np.int64), np.zeros(3, dtype=np.int64))
    assert memory == () and state[0].shape == (2, 3, 16) and state[1].shape == (3, 16)
    log_probs, attn, state = stepper.step(np.array([BOS] * 3, dtype=np.int64), memory, state)
    assert log_probs.shape == (3, VOCAB) and attn is None
    state = stepper.select_state(state, np.array([2, 0], dtype=np.int64))
    assert state[0].shape == (2, 2, 16) and state[1].shape == (2, 16)


# -- ONNX: encode and step trace to graphs that match torch at other sizes ---------------------------
class _Encode(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, src, lengths):
        memory, state = self.model.encode(src, lengths)
        return (*memory, *state)


class _Step(torch.nn.Module):
    def __init__(self, model, n_memory):
        super().__init__()
        self.model, self.n_memory = model, n_memory

    def forward(self, y_prev, *flat):
        logits, attn, state = self.model.step(y_prev, flat[: self.n_memory], flat[self.n_memory :])
        return (logits, attn, *state)


@pytest.mark.filterwarnings("ignore")  # tracer and legacy-exporter notices; the outputs are checked below
@pytest.mark.parametrize("enc,dec,attention,input_feeding", [("gru", "lstm", "bahdanau", True), ("lstm", "gru", "luong-general", False)])
def test_encode_and_step_export_to_onnx(tmp_path, enc, dec, attention, input_feeding):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = build_model(tiny_config(enc, dec, attention, input_feeding, dropout=0.1), "seq2seq", VOCAB, VOCAB, PAD).eval()
    src, lengths = source_batch()
    with torch.no_grad():
        memory, state = model.encode(src, lengths)
    nm, ns = len(memory), len(state)
    mem_names = [f"memory_{i}" for i in range(nm)]
    state_names = [f"state_{i}" for i in range(ns)]
    batch_axes = {**{n: {0: "B", 1: "S"} for n in mem_names}, **{n: {d: "B"} for n, d in zip(state_names, model.state_batch_dims)}}
    # .eval() on the wrappers: export restores the wrapper's own train/eval mode afterwards.
    torch.onnx.export(_Encode(model).eval(), (src, lengths), str(tmp_path / "encode.onnx"), dynamo=False,
                      input_names=["src", "src_lengths"], output_names=mem_names + state_names,
                      dynamic_axes={"src": {0: "B", 1: "S"}, "src_lengths": {0: "B"}, **batch_axes})
    torch.onnx.export(_Step(model, nm).eval(), (src[:, 0], *memory, *state), str(tmp_path / "step.onnx"), dynamo=False,
                      input_names=["y_prev", *mem_names, *state_names],
                      output_names=["logits", "attention", *[f"new_{n}" for n in state_names]],
                      dynamic_axes={"y_prev": {0: "B"}, **batch_axes})
    encode = ort.InferenceSession(str(tmp_path / "encode.onnx"))
    step = ort.InferenceSession(str(tmp_path / "step.onnx"))
    src2 = np.array([[4, 5, 6, 7, 8, 9], [9, 0, 0, 0, 0, 0], [5, 6, 7, 0, 0, 0]], dtype=np.int64)  # other B and S
    len2 = np.array([6, 1, 3], dtype=np.int64)
    flat = encode.run(None, {"src": src2, "src_lengths": len2})
    with torch.no_grad():
        memory, state = model.encode(torch.from_numpy(src2), torch.from_numpy(len2))
    for got, want in zip(flat, (*memory, *state)):
        np.testing.assert_allclose(got, want.numpy(), atol=1e-5)
    y = np.array([BOS] * 3, dtype=np.int64)
    ort_state = flat[nm:]
    for _ in range(3):
        out = step.run(None, {"y_prev": y, **dict(zip(mem_names, flat[:nm])), **dict(zip(state_names, ort_state))})
        with torch.no_grad():
            logits, attn, state = model.step(torch.from_numpy(y), memory, state)
        np.testing.assert_allclose(out[0], logits.numpy(), atol=1e-5)
        np.testing.assert_allclose(out[1], attn.numpy(), atol=1e-5)
        ort_state, y = out[2:], out[0].argmax(-1)


# -- learning: every attention and every cell fits a tiny reverse task ------------------------------
def reverse_batch(gen, batch=32):
    """Sources of 4-7 tokens from ids 4..9; targets are the reversed source then eos."""
    lengths = torch.randint(4, 8, (batch,), generator=gen)
    width = int(lengths.max())
    real = torch.arange(width)[None] < lengths[:, None]
    src = torch.randint(4, VOCAB, (batch, width), generator=gen).masked_fill(~real, PAD)
    tgt = torch.zeros(batch, width + 1, dtype=torch.long)
    for i, n in enumerate(lengths.tolist()):
        tgt[i, :n] = src[i, :n].flip(0)
        tgt[i, n] = EOS
    tgt_in = torch.cat([torch.full((batch, 1), BOS), tgt[:, :-1]], 1)
    return src, lengths, tgt_in, tgt


def train_reverse(cfg, max_steps):
    """Adam on fresh batches until a held-out batch's loss (eval mode) is < 0.05; that loss."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = build_model(cfg, "seq2seq", VOCAB, VOCAB, PAD)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)

    def loss_of(batch):
        src, lengths, tgt_in, tgt = batch
        logits = model(src, lengths, tgt_in)
        return torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), tgt.reshape(-1), ignore_index=PAD)

    held_out = reverse_batch(torch.Generator().manual_seed(123), batch=64)
    for step in range(1, max_steps + 1):
        loss = loss_of(reverse_batch(gen))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0 or step == max_steps:
            model.eval()
            with torch.no_grad():
                held_out_loss = loss_of(held_out).item()
            model.train()
            if held_out_loss < 0.05:
                break
    return held_out_loss


DEFAULT_LEARNING = [
    ("lstm", "lstm", "none", False),
    ("lstm", "lstm", "bahdanau", False),
    ("lstm", "lstm", "luong-dot", False),
    ("lstm", "lstm", "luong-general", False),
    ("lstm", "lstm", "luong-concat", False),
    ("gru", "gru", "luong-general", False),
    ("rnn", "rnn", "luong-general", False),
    ("gru", "gru", "luong-dot", True),
]


@pytest.mark.parametrize("enc,dec,attention,input_feeding", DEFAULT_LEARNING)
def test_learns_reverse_task(one_thread, enc, dec, attention, input_feeding):
    loss = train_reverse(tiny_config(enc, dec, attention, input_feeding), 2000 if attention == "none" else 400)
    assert loss < 0.1


@pytest.mark.slow
@pytest.mark.parametrize("cell,attention,input_feeding", [
    c for c in itertools.product(["lstm", "gru", "rnn"], ["none", "bahdanau", "luong-dot", "luong-general", "luong-concat"], [False, True])
    if (c[0], c[0], *c[1:]) not in DEFAULT_LEARNING
])
def test_learns_reverse_task_every_combination(one_thread, cell, attention, input_feeding):
    loss = train_reverse(tiny_config(cell, cell, attention, input_feeding), 3000 if attention == "none" else 800)
    assert loss < 0.1


def test_top_k_lower_id_breaks_ties_like_onnx_topk():
    """torch.topk leaves the order of equal values open; top_k_lower_id puts the lower id first,
    at the cut and inside the k, exactly as seqkit.search.top_k_rows (and ONNX TopK) do."""
    from seqkit.models import top_k_lower_id
    from seqkit.search import top_k_rows

    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        x = torch.round(torch.randn(6, 40, generator=gen) * 2) / 2  # many equal values per row
        for k in (1, 4, 39, 40):
            values, ids = top_k_lower_id(x.clone(), k)
            want = top_k_rows(x.numpy(), k, eos_id=0)
            np.testing.assert_array_equal(ids.numpy(), want.ids)
            np.testing.assert_array_equal(values.numpy(), want.log_probs)
