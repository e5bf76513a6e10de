import pytest
import torch

from seqkit.cpu_kernels import native_rnn

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
