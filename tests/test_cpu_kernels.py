import numpy as np
import pytest
import torch

from seqkit.cpu_kernels import OneDnnDecoding, largest_product, native_rnn, onednn_available, onednn_pays
from seqkit.model_config import ModelConfig
from seqkit.models import TorchStepper, build_model

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")


def test_native_rnn_turns_onednn_off_for_float32_cpu_work_and_restores_it():
    before = torch.backends.mkldnn.enabled
    with native_rnn(torch.device("cpu")):
        assert not torch.backends.mkldnn.enabled
    assert torch.backends.mkldnn.enabled == before


@pytest.mark.parametrize("dtype", [torch.bfloat16, None])
def test_native_rnn_leaves_onednn_on_for_autocast_dtypes(dtype):
    before = torch.backends.mkldnn.enabled
    with native_rnn(torch.device("cpu"), dtype):
        assert torch.backends.mkldnn.enabled == before


def test_native_rnn_gives_the_same_lstm_outputs():
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(8, 8, 2, batch_first=True).eval()
    x = torch.randn(3, 1, 8)
    with torch.inference_mode():
        ref, _ = lstm(x)
        with native_rnn(torch.device("cpu")):
            out, _ = lstm(x)
    torch.testing.assert_close(out, ref)


# -- OneDnnDecoding: a decoding step's products on oneDNN -----------------------------------------
onednn = pytest.mark.skipif(not onednn_available(), reason="torch without oneDNN's packed inner product")


@onednn
def test_linear_in_the_mode_matches_torch_and_packs_the_weight_once():
    torch.manual_seed(0)
    lin = torch.nn.Linear(32, 50)
    x = torch.randn(7, 1, 32)  # any leading dims
    cache = {}
    with torch.inference_mode():
        ref = lin(x)
        with OneDnnDecoding(cache):
            out, again = lin(x), lin(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(out, again) and out.shape == (7, 1, 50)
    assert len(cache) == 1  # packed on first use, then reused


@onednn
def test_a_changed_weight_is_packed_again():
    torch.manual_seed(0)
    lin = torch.nn.Linear(16, 8)
    x = torch.randn(3, 16)
    cache = {}
    with torch.inference_mode(), OneDnnDecoding(cache):
        lin(x)
    with torch.no_grad():
        lin.weight.mul_(-2.0)  # as an optimizer step or an EMA swap would (in place)
    with torch.inference_mode():
        ref = lin(x)
        with OneDnnDecoding(cache):
            out = lin(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@onednn
def test_two_views_of_one_weight_are_packed_apart():
    torch.manual_seed(0)
    weight = torch.randn(20, 8)
    x = torch.randn(3, 8)
    cache = {}
    with torch.inference_mode(), OneDnnDecoding(cache):
        first, second = torch.nn.functional.linear(x, weight[:10]), torch.nn.functional.linear(x, weight[:20])
    torch.testing.assert_close(first, x @ weight[:10].T, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(second, x @ weight.T, atol=1e-5, rtol=1e-5)  # same data_ptr, not the same weight
    assert len(cache) == 2


@onednn
@pytest.mark.parametrize("batch_first", [True, False])
def test_one_lstm_step_in_the_mode_matches_torch(batch_first):
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(12, 10, 2, batch_first=batch_first, dropout=0.3).eval()
    x = torch.randn(5, 1, 12) if batch_first else torch.randn(1, 5, 12)
    hx = (torch.randn(2, 5, 10), torch.randn(2, 5, 10))
    cache = {}
    with torch.inference_mode():
        ref, (ref_h, ref_c) = lstm(x, hx)
        with OneDnnDecoding(cache):
            out, (h, c) = lstm(x, hx)
    for a, b in ((out, ref), (h, ref_h), (c, ref_c)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert len(cache) == 2  # one packed [W_ih W_hh] per layer


@onednn
def test_what_the_mode_does_not_cover_runs_as_torch_runs_it():
    torch.manual_seed(0)
    bi = torch.nn.LSTM(6, 4, 1, batch_first=True, bidirectional=True).eval()
    uni = torch.nn.LSTM(6, 4, 1, batch_first=True).eval()
    seq = torch.randn(2, 3, 6)  # three steps
    packed = torch.nn.utils.rnn.pack_padded_sequence(seq, torch.tensor([3, 2]), batch_first=True)
    cache = {}
    with torch.inference_mode():
        refs = [bi(seq)[0], uni(seq)[0], uni(packed)[0].data]
        with OneDnnDecoding(cache):
            outs = [bi(seq)[0], uni(seq)[0], uni(packed)[0].data]
    for a, b in zip(outs, refs):
        assert torch.equal(a, b)
    assert cache == {}
    # outside inference mode (training, export tracing): torch's own op, gradients and all
    lin = torch.nn.Linear(6, 3)
    with OneDnnDecoding(cache):
        y = lin(torch.randn(2, 6))
    y.sum().backward()
    assert lin.weight.grad is not None and cache == {}


@onednn
def test_the_torch_stepper_decodes_through_the_mode_with_torchs_results():
    torch.manual_seed(0)
    cfg = ModelConfig(encoder={"type": "lstm", "embedding_dim": 8, "hidden_size": 8, "num_layers": 2, "bidirectional": True},
                      decoder={"type": "lstm", "embedding_dim": 8, "hidden_size": 16, "num_layers": 2,
                               "input_feeding": True, "attention": {"type": "luong-general"}})
    model = build_model(cfg, "seq2seq", 12, 40, 0).eval()
    src = np.array([[5, 6, 7, 2], [8, 9, 2, 0]], dtype=np.int64)
    lengths = np.array([4, 3])
    fast, plain = TorchStepper(model, onednn=True), TorchStepper(model, onednn=False)
    (mem_f, st_f), (mem_p, st_p) = fast.start(src, lengths), plain.start(src, lengths)
    y = np.array([1, 1], dtype=np.int64)
    for _ in range(3):
        logp_f, attn_f, st_f = fast.step(y, mem_f, st_f)
        logp_p, attn_p, st_p = plain.step(y, mem_p, st_p)
        np.testing.assert_allclose(logp_f, logp_p, atol=1e-4)
        np.testing.assert_allclose(attn_f, attn_p, atol=1e-5)
        y = logp_p.argmax(axis=1)
    assert fast._onednn and plain._onednn is None  # the products went through oneDNN, or not


def test_bench_products_tool_times_each_library_on_the_same_product(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent.parent / "tools" / "bench_products.py"
    spec = importlib.util.spec_from_file_location("bench_products", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--rows", "4", "--inner", "8", "--out", "16", "--threads", "1", "--calls", "2", "--repeats", "1"])
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "ms" not in line]
    names = [r[1].strip() for r in rows]
    assert names[0] == "torch addmm (MKL sgemm)" and "onnxruntime Gemm (MLAS)" in names and "numpy matmul (its BLAS)" in names
    assert ("torch oneDNN inner product, packed weight" in names) == onednn_available()
    assert all(float(r[5]) < 1e-4 for r in rows)  # the same product, to float32 rounding


def test_the_mode_is_taken_only_where_the_products_are_large_enough():
    lstm_model = torch.nn.Sequential(torch.nn.LSTM(256, 256, 2), torch.nn.Linear(256, 8000))
    assert largest_product(lstm_model) == 256 * 8000  # more than a layer's 4H x (I + H) = 1024 x 512
    assert largest_product(torch.nn.LSTM(512, 512, 1)) == 2048 * 1024
    assert not onednn_pays(1, 256 * 8000) and onednn_pays(2, 256 * 8000)  # measured 0.94x and 1.28x
    assert not onednn_pays(1000, 256 * 64)  # a small model never: its products are MKL's to win


@onednn
def test_the_stepper_of_a_small_model_keeps_torchs_kernels_by_default():
    cfg = ModelConfig(decoder={"type": "lstm", "embedding_dim": 8, "hidden_size": 16, "num_layers": 2})
    model = build_model(cfg, "lm", None, 40, 0).eval()
    auto, forced = TorchStepper(model), TorchStepper(model, onednn=True)
    for stepper in (auto, forced):
        memory, state = stepper.start(np.zeros((4, 0), dtype=np.int64), np.zeros(4, dtype=np.int64))
        stepper.step(np.ones(4, dtype=np.int64), memory, state)
    assert auto._onednn == {} and forced._onednn  # nothing packed unless asked: the mode costs more than it gains
